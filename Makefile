# Two entry points, each installs everything first (see README):
#   make run   - set up, then federated training on a local network of 4 validators (scripts/demo.py;
#                make run ARGS=--dev for one dev node)
#   make test  - set up, then run the whole test suite (in a random order; the seed is printed)
# and for the measured figures: make bench (every benchmark in scripts/bench/ at its default sizes;
# one of them: make bench BENCHES=scripts/bench/rpc.py ARGS="--seconds 5 --json").
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

BENCHES ?= $(filter-out scripts/bench/__init__.py scripts/bench/report.py,$(sort $(wildcard scripts/bench/*.py)))

bench: install
	@set -e; for bench in $(BENCHES); do echo "== $$bench"; $(PY) $$bench $(ARGS); done

clean:
	rm -rf $(VENV) .pytest_cache
