# The project's commands. `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pytest arguments, e.g. `make test PYTEST_ARGS="-m 'not slow'"`.
PYTEST_ARGS ?=

.PHONY: setup demo test lint format bench docs-cli clean

# (Re)install when pyproject.toml or the constraints change. constraints.txt pins the verified
# stack so that two installs a month apart get the same versions.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/omopfed demo

# pytest exits 5 when it collected no tests (e.g. a -k that matches nothing): reported, not failed.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$status

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	@set -e; shopt -s nullglob; for bench in benchmarks/bench_*.py; do \
		echo "== $$bench"; $(PY) $$bench; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
