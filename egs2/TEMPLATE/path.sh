# Environment of the recipes: the repository's venv, C locale, UTF-8 I/O. Nothing else.
# The one copy: each recipe's path.sh is a link to this file (source it in a shell there to get
# the recipe's environment), and egs2/TEMPLATE/stages.sh sources it.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
export MAIN_ROOT
# The interpreter with chunkssl_espnet installed (tools/setup_venv.sh makes .venv).
export PYTHON=${PYTHON:-${MAIN_ROOT}/.venv/bin/python}
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
# Python's optimised mode: typeguard's @typechecked (on ESPnet's classes and their dependencies')
# is then a no-op instead of re-compiling each decorated function at import, which cut the start
# of every ESPnet process from about 21 s to 9 s here (the toy recipe: 253 s -> 135 s, same
# results). It also drops `assert` statements; our inputs are checked with errors, not asserts.
# `PYTHONOPTIMIZE= ./run.sh` runs with ESPnet's run-time type checks back on.
export PYTHONOPTIMIZE=${PYTHONOPTIMIZE-1}
# Threads per process: the tiny models gain little from more, and parallel jobs share the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
