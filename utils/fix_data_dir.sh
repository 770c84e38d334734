#!/usr/bin/env bash
# Keep the utterances present in every file of a data directory, sort, rebuild spk2utt.
# Usage: utils/fix_data_dir.sh <data-dir>
set -euo pipefail
[ $# -eq 1 ] || { echo "Usage: $0 <data-dir>" 1>&2; exit 1; }
exec "${PYTHON:-python3}" -m chunkssl_espnet.data fix "$1"
