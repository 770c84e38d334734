# Environment of the recipes: the repository's venv, C locale, UTF-8 I/O. Nothing else.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export MAIN_ROOT
# The interpreter with chunkssl_espnet installed (tools/setup_venv.sh makes .venv).
export PYTHON=${PYTHON:-${MAIN_ROOT}/.venv/bin/python}
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
# Threads per process: the tiny models gain little from more, and parallel jobs share the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
