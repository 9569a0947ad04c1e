# The two commands a newcomer needs are `make run` and `make test`; each builds the
# virtual environment it needs first, so a fresh clone with python3 and make is enough.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench bench-quick schema clean system-deps

run: $(STAMP)  ## The gateway plus the embedded PBX simulator, GraphiQL at http://127.0.0.1:8000/graphql
	$(PY) -m gateway demo

test: lint system-deps  ## The whole suite: lint, types, then pytest
	$(PY) -m pytest

system-deps:  ## Debian packages the tests use (redis-server, chromium, node), when root
	scripts/install-system-deps

lint: $(STAMP)  ## ruff and mypy (strict), both must be clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## Gateway vs HTTP ceiling vs naive gateway, < 5 min, loopback only; results in bench/results/
	$(PY) -m bench

bench-quick: $(STAMP)  ## The one-minute benchmark
	$(PY) -m bench --quick

schema: $(STAMP)  ## Regenerate schema.graphql from the code
	$(PY) -m gateway export-schema > schema.graphql

# The venv is rebuilt whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
