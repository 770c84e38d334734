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

apt_pkgs="flite sox espeak-ng festival festvox-kdlpc16k fortunes fortunes-min dict-freedict-eng-deu pocketsphinx-testdata"
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
# --no-compile: pip would write the bytecode of all 16,000 modules of the venv, one at a time
# (80 s here), while the recipes and tests import some 4,000; they are compiled below.
"${venv}/bin/python" -m pip install -q --no-compile -c requirements/constraints.txt \
    -e ".[test,lint,st,deploy]"
# The bytecode of what runs, in both of Python's modes, two processes at once: the optimised one
# (*.opt-1.pyc) that the recipes' PYTHONOPTIMIZE=1 reads (path.sh), and the plain one of the test
# processes. With PYTHONDONTWRITEBYTECODE set, Python would otherwise compile every module from
# source at each start. Importing the entry points' modules writes it for those; some come late:
# a training's first optimizer imports torch._dynamo (2.6 s from bytecode, 9 s from source), the
# statistics ESPnet's aggregate_stats_dirs, the plots matplotlib's Agg and PIL's plugins. After
# the optimised pass, collecting the tests writes the plain bytecode of their imports.
echo "setup_venv: writing the bytecode of the modules the entry points and the tests import" >&2
imports="import chunkssl_espnet.espnet_plugin, espnet2.tasks.ssl, espnet2.tasks.asr, \
espnet2.tasks.st, espnet2.bin.asr_inference, espnet2.bin.st_inference, espnet2.bin.launch, \
espnet2.bin.aggregate_stats_dirs, espnet2.main_funcs.pack_funcs, \
espnet2.torch_utils.get_flash_attn_compatability, torch._dynamo, torch.utils.serialization, \
torch._subclasses.schema_check_mode, torch.distributed.run, \
torch.distributed.elastic.rendezvous.c10d_rendezvous_backend, matplotlib.pyplot, \
matplotlib.backends.backend_agg, PIL.Image, sentencepiece, jiwer, editdistance, sacrebleu, \
sacrebleu.tokenizers.tokenizer_13a, kaldiio; PIL.Image.init()"
compile_log=${venv}/.bytecode.log
{ env -u PYTHONDONTWRITEBYTECODE "${venv}/bin/python" -O -c "${imports}" > "${compile_log}.opt" 2>&1 \
    || exit 1
  env -u PYTHONDONTWRITEBYTECODE "${venv}/bin/python" -m pytest --collect-only -q \
    -p no:cacheprovider tests > "${compile_log}.tests" 2>&1 \
    || echo "setup_venv: WARNING: collecting the tests failed; see ${compile_log}.tests" >&2
} &
optimised=$!
ok=true
env -u PYTHONDONTWRITEBYTECODE "${venv}/bin/python" -c "${imports}" > "${compile_log}" 2>&1 \
    || ok=false
wait "${optimised}" || ok=false
if [ "${ok}" != true ]; then
    echo "setup_venv: importing the entry points' modules failed; see ${compile_log}" \
        "and ${compile_log}.opt" >&2
    exit 1
fi
echo "${want}" > "${stamp}"
