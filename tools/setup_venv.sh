#!/usr/bin/env bash
# Create .venv in the repo and install chunkssl_espnet with its pinned dependencies, plus the Debian
# packages the recipes and tests use (flite, sox, festival and its ked voice, fortunes, freedict,
# pocketsphinx-testdata).
# Idempotent: does nothing when the stamp matches setup.cfg and the constraints.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp=${venv}/.chunkssl_stamp
want=$(cat setup.cfg requirements/constraints.txt tools/setup_venv.sh | sha1sum | cut -d' ' -f1)

apt_pkgs="flite sox festival festvox-kdlpc16k fortunes fortunes-min dict-freedict-eng-deu pocketsphinx-testdata"
missing=""
for p in ${apt_pkgs}; do
    dpkg -s "${p}" >/dev/null 2>&1 || missing="${missing} ${p}"
done
if [ -n "${missing}" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup_venv: installing Debian packages:${missing}" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing}) >&2 \
            || echo "setup_venv: WARNING: apt-get failed; tests that need${missing} will be skipped" >&2
    else
        echo "setup_venv: not root, cannot install Debian packages:${missing}." >&2
        echo "setup_venv: run 'sudo apt-get install${missing}'; tests that need them are skipped." >&2
    fi
fi

if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    exit 0
fi
python=${PYTHON:-python3}
[ -x "${venv}/bin/python" ] || "${python}" -m venv "${venv}"
echo "setup_venv: installing into ${venv} (torch 2.12.1 + espnet 202511: about 5 GB, a few minutes)" >&2
"${venv}/bin/python" -m pip install -q --upgrade "pip<26"
"${venv}/bin/python" -m pip install -q -c requirements/constraints.txt -e ".[test,lint,st]"
# The optimised-mode bytecode (*.opt-1.pyc) that the recipes' PYTHONOPTIMIZE=1 reads (path.sh):
# pip writes only the plain one, and with PYTHONDONTWRITEBYTECODE set Python would compile every
# module from source at each start. Importing what the entry points import writes it for those
# modules (about 3,500; 30 s, against a minute for all of site-packages).
echo "setup_venv: writing optimised-mode bytecode of the modules the entry points import" >&2
env -u PYTHONDONTWRITEBYTECODE "${venv}/bin/python" -O -c "import chunkssl_espnet.espnet_plugin, \
espnet2.tasks.ssl, espnet2.tasks.asr, espnet2.tasks.st, espnet2.bin.asr_inference, \
espnet2.bin.st_inference, espnet2.bin.launch, matplotlib.pyplot, sentencepiece, jiwer, \
sacrebleu, kaldiio, torch.distributed.run" >/dev/null 2>&1 \
    || { echo "setup_venv: importing the entry points' modules failed (run it without -O)" >&2; exit 1; }
echo "${want}" > "${stamp}"
