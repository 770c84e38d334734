# The README's two commands: `make main` (the mini end-to-end recipe, CPU) and `make test`.
PY := .venv/bin/python

.PHONY: venv main test lint
venv:
	@bash tools/setup_venv.sh

main: venv
	cd egs2/mini_flite/asr1 && ./run.sh

test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

lint: venv
	$(PY) -m ruff check .
