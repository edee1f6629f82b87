# The template's whole test suite in one command: `make test`. It makes the two environments it
# needs on first use (or when their requirements change), then runs pytest over tests/.
PYTHON ?= python3

.PHONY: test
# --durations: every run (CI's included) ends with its slowest tests, where the suite's time goes.
test: .venv/installed .venv-notebook/installed
	.venv/bin/python -m pytest tests --durations=40 $(PYTEST_ARGS)

.venv/installed: tests/requirements.txt bench/requirements.txt
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet -r tests/requirements.txt
	touch $@

# The launcher notebook's kernel: the SageMaker SDK's dependencies clash with the main environment's pins.
.venv-notebook/installed: tests/requirements-notebook.txt
	$(PYTHON) -m venv .venv-notebook
	.venv-notebook/bin/python -m pip install --quiet --upgrade pip
	.venv-notebook/bin/python -m pip install --quiet -r tests/requirements-notebook.txt
	touch $@

# Every rendered project's requirements.txt, made again by its own `make lock` (tools/lock_projects.py);
# needs the package index, and PyTorch's CPU wheel on this machine (tests/wheel_index.py finds it).
.PHONY: locks
locks: .venv/installed
	.venv/bin/python -m tools.lock_projects
