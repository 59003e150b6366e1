# Two entry points, each installs everything first (see README):
#   make run   - set up, then federated training through a dev node (scripts/demo.py)
#   make test  - set up, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: install
	$(PY) scripts/demo.py $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

test-fast: install
	$(PY) -m pytest -m 'not slow' $(ARGS)

bench: install
	$(PY) scripts/bench/import_transfers.py

clean:
	rm -rf $(VENV) .pytest_cache
