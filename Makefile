# The two commands a newcomer needs are `make run` and `make test`; each builds the
# virtual environment it needs first, so a fresh clone with python3 and make is enough.
#
# Every Python package comes from uv.lock (exact versions and hashes): uv installs it,
# and uv itself is pinned by hash in scripts/uv-requirements.txt and installed with pip
# into a small bootstrap venv ($(TOOLS)). `make run` installs the runtime dependencies
# only; `make test` and `make lint` add the development tools (the `dev` extra).

PYTHON ?= python3
VENV   ?= .venv
TOOLS  ?= .venv-tools
HOST   ?= 127.0.0.1
PORT   ?= 8000
PBX_PORT ?= 8088
PY     := $(VENV)/bin/python
# pytest-xdist processes for `make test` (each test file stays on one; 1 runs them in turn).
TEST_WORKERS ?= 2
UV     := $(TOOLS)/bin/uv
# Which venv `uv sync` fills, and which interpreter it builds it from: python3 as found,
# never one uv would download.
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
# ariadne-codegen has a venv of its own: it pins graphql-core and ruff below the project's.
CODEGEN   := .venv-codegen/bin/ariadne-codegen
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint format lock lock-check sbom codegen bench bench-quick bench-peers schema clean \
	system-deps chaos graphiql-assets web-example schema-check-tools

run: $(RUN_STAMP)  ## The gateway plus the embedded PBX simulator, GraphiQL at http://$(HOST):$(PORT)/graphql
	-@$(PYTHON) scripts/build-web-example  # the web example's urql bundle (npm); without it the page says how
	$(PY) -m gateway demo --host $(HOST) --port $(PORT) --pbx-port $(PBX_PORT)

test: lock-check lint system-deps web-example schema-check-tools bench-peers $(DEV_STAMP) $(CODEGEN)  ## The whole suite: the lock, lint, types, then pytest
	$(PY) -m pytest -n $(TEST_WORKERS)

system-deps:  ## Debian packages the tests use (redis-server, chromium, node), when root
	scripts/install-system-deps

lint: $(DEV_STAMP)  ## ruff, mypy (strict) and the declared layers (import-linter), all must be clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock: $(UV)  ## Update uv.lock after a change to pyproject.toml; UPGRADE=1 moves every package to its newest
	$(UV) lock $(if $(UPGRADE),--upgrade)

lock-check: $(UV)  ## uv.lock still matches pyproject.toml (fails when someone forgot `make lock`)
	$(UV) lock --check

# The SBOM lists what the image ships: the runtime set plus its redis extra, from uv.lock.
SBOM        ?= dist/pbx-gateway.cdx.json
SBOM_EXTRAS ?= redis
sbom: $(UV)  ## A CycloneDX 1.5 SBOM of the locked runtime set (+ SBOM_EXTRAS) in $(SBOM)
	mkdir -p $(dir $(SBOM))
	$(UV) export --frozen --quiet --preview-features sbom-export --format cyclonedx1.5 \
		$(foreach extra,$(SBOM_EXTRAS),--extra $(extra)) --output-file $(SBOM) >/dev/null
	@echo "sbom: $(SBOM)"

graphiql-assets:  ## Fetch GraphiQL's browser files again from the npm registry (they are committed)
	$(PYTHON) scripts/fetch-graphiql-assets

schema-check-tools:  ## graphql-inspector from the npm registry into tools/schema-check/ (the schema checks in the suite)
	$(PYTHON) scripts/check-schema --install

web-example:  ## urql's core, bundled from the npm registry into examples/web/vendor/ (demo: /examples/web/)
	$(PYTHON) scripts/build-web-example

chaos: $(DEV_STAMP)  ## Two minutes of random PBX faults under 50 clients, loopback only; exit 1 on a broken invariant
	$(PY) scripts/chaos.py --duration 120 --clients 50

bench: $(DEV_STAMP)  ## Gateway vs HTTP ceiling, naive gateway, Apollo, Yoga, live fan-out; < 7 min, loopback only; bench/results/
	-@$(MAKE) --no-print-directory bench-peers  # without npm the peers are skipped, and the run says so
	$(PY) -m bench

bench-quick: $(DEV_STAMP)  ## The short benchmark (under 100 s)
	-@$(MAKE) --no-print-directory bench-peers
	$(PY) -m bench --quick

bench-peers: bench/peers/node_modules/.package-lock.json  ## Node 24 and the peers (Apollo, Yoga) from npm into bench/peers/

bench/peers/node_modules/.package-lock.json: bench/peers/package.json bench/peers/package-lock.json
	cd bench/peers && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

codegen: $(CODEGEN)  ## Regenerate examples/service's typed client (ariadne-codegen) from schema.graphql and its operations
	$(CODEGEN) --config examples/service/ariadne-codegen.toml

schema: $(RUN_STAMP)  ## Regenerate schema.graphql from the code
	$(PY) -m gateway export-schema > schema.graphql

# uv, pinned by hash; its venv is rebuilt when the pin changes.
$(UV): scripts/uv-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r scripts/uv-requirements.txt
	touch $(UV)

# The venv follows uv.lock: `--frozen` installs exactly the locked set and never
# re-resolves. The runtime set is synced `--inexact`, so running the demo after the
# tests keeps the development tools instead of uninstalling them.
$(RUN_STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --inexact --quiet
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --extra dev --quiet
	touch $(DEV_STAMP) $(RUN_STAMP)

$(CODEGEN): scripts/codegen-requirements.txt $(UV)
	$(UV) venv --quiet --allow-existing .venv-codegen
	$(UV) pip install --quiet --python .venv-codegen/bin/python --require-hashes \
		-r scripts/codegen-requirements.txt
	touch $(CODEGEN)

clean:
	rm -rf $(VENV) $(TOOLS) .venv-codegen .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info examples/web/vendor \
		bench/peers/node_modules tools/schema-check/node_modules
