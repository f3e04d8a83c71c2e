# The two commands of the README:
#   make demo   set up the environment, generate the demo data, train and
#               test on it (CPU, minutes), print the results table
#   make test   set up the environment, run the test suite
# Both bootstrap .venv idempotently (tools/bootstrap.sh).

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per core, at most 4 (each real-model
# training peaks near 3 GB); each runs torch single-threaded
# (tests/conftest.py). TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); \
	[ "$$n" -gt 4 ] && n=4; echo $$n)

.PHONY: setup demo test clean-demo

setup:
	bash tools/bootstrap.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

clean-demo:
	rm -rf data/demo work_dirs/demo
