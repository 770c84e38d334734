#!/usr/bin/env bash
# Check a Kaldi-style data directory (sorted unique ids, utt2spk/spk2utt, text, audio files).
# Usage: utils/validate_data_dir.sh [--no-text] [--no-audio] <data-dir>
# Kaldi's --no-feats and --no-wav are accepted and ignored (we never use feats.scp).
set -euo pipefail
args=()
for a in "$@"; do
    case "${a}" in
        --no-feats|--no-spk-sort) ;;
        --no-wav) args+=(--no-audio) ;;
        *) args+=("${a}") ;;
    esac
done
exec "${PYTHON:-python3}" -m chunkssl_espnet.data validate "${args[@]}"
