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
echo "${want}" > "${stamp}"
