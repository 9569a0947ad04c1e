# The two commands a newcomer needs are `make run` and `make test`; each builds the
# virtual environment it needs first, so a fresh clone with python3 and make is enough.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench bench-quick bench-peers schema clean system-deps chaos graphiql-assets web-example

run: $(STAMP)  ## The gateway plus the embedded PBX simulator, GraphiQL at http://127.0.0.1:8000/graphql
	-@$(PYTHON) scripts/fetch-graphiql-assets  # GraphiQL's files (npm); without them the page says how
	-@$(PYTHON) scripts/build-web-example  # the web example's urql bundle (npm); likewise
	$(PY) -m gateway demo

test: lint system-deps graphiql-assets web-example bench-peers  ## The whole suite: lint, types, then pytest
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

graphiql-assets:  ## GraphiQL's browser files from the npm registry into gateway/static/graphiql/
	$(PYTHON) scripts/fetch-graphiql-assets

web-example:  ## urql's core, bundled from the npm registry into examples/web/vendor/ (demo: /examples/web/)
	$(PYTHON) scripts/build-web-example

chaos: $(STAMP)  ## Two minutes of random PBX faults under 50 clients, loopback only; exit 1 on a broken invariant
	$(PY) scripts/chaos.py --duration 120 --clients 50

bench: $(STAMP)  ## Gateway vs HTTP ceiling, naive gateway, Apollo, Yoga; < 5 min, loopback only; bench/results/
	-@$(MAKE) --no-print-directory bench-peers  # without npm the peers are skipped, and the run says so
	$(PY) -m bench

bench-quick: $(STAMP)  ## The short benchmark (under 90 s)
	-@$(MAKE) --no-print-directory bench-peers
	$(PY) -m bench --quick

bench-peers: bench/peers/node_modules/.package-lock.json  ## Node 24 and the peers (Apollo, Yoga) from npm into bench/peers/

bench/peers/node_modules/.package-lock.json: bench/peers/package.json bench/peers/package-lock.json
	cd bench/peers && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

schema: $(STAMP)  ## Regenerate schema.graphql from the code
	$(PY) -m gateway export-schema > schema.graphql

# The venv is rebuilt whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info gateway/static/graphiql examples/web/vendor bench/peers/node_modules
