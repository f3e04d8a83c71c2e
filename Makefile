# The two commands of the README:
#   make demo   set up the environment, generate the demo data, train and
#               test on it (CPU, minutes), print the results table
#   make test   set up the environment, run the test suite
# Both bootstrap .venv idempotently (tools/bootstrap.sh).

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test clean-demo

setup:
	bash tools/bootstrap.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean-demo:
	rm -rf data/demo work_dirs/demo
