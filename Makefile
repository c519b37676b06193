# Weir's developer entry points. Each target does its own set-up and is safe to re-run.
#   make demo    the whole pipeline on the embedded defaults: stack up (dashboard, Airflow),
#                events through the API into the lake, the transform workflow, a summary
#   make test    every test: Rust unit tests, then pytest (installs Debian's chromium for the
#                dashboard's browser test if it is missing)
#   make bench   the benchmarks in bench/ (results: BENCHMARKS.md)
#   make notebook  JupyterLab on notebooks/ (quickstart.ipynb, pipeline_sql.ipynb)
#   make down    stop the local stack that `make demo` / `weir up` left running
#   make setup   virtual environment (.venv, uv) + the Rust extension (maturin) + the Node
#                tools of the local stack (npm ci: kinesalite, which `weir up` runs), nothing else
#
# The Cargo target directory lives outside the checkout so fresh clones reuse a warm build.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(HOME)/.local/bin:$(PATH)
export CARGO_TARGET_DIR ?= $(HOME)/.cache/weir/target
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
# pyo3 builds against the project's interpreter, for `cargo test` and maturin alike.
export PYO3_PYTHON := $(PY)
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup postgresql chromium wrk down notebook demo test test-rust test-python bench lint clean

setup: $(VENV)/.deps-installed node_modules/.installed postgresql
	@echo "== building the Rust extension (weir._native) =="
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --release --uv --quiet
	@$(PY) -c "import weir; print('weir', weir.__version__, 'ready in', '$(VENV)')"

# Python dependencies, re-synced whenever the lock file changes.
$(VENV)/.deps-installed: requirements.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
	@test -x $(PY) || uv venv --quiet --python 3.11 $(VENV)
	uv pip sync --quiet --python $(PY) requirements.lock
	@touch $@

# Node tools of the local stack (package.json: kinesalite, the local Kinesis-API server),
# re-installed from the lock file whenever it changes. leveldown ships prebuilt binaries for
# linux-x64, so no compiler is needed.
node_modules/.installed: package-lock.json package.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 18 or newer" \
	  "(with npm); weir up and the Kinesis tests run kinesalite on it" >&2; exit 1; }
	npm ci --no-audit --no-fund --silent
	@touch $@

# PostgreSQL (Debian's package) for the PostgreSQL-metastore test; without it that test is
# skipped with the reason, everything else works.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { command -v apt-get >/dev/null && { apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null 2>&1; }; } ; } || \
	  echo "note: could not install PostgreSQL; the PostgreSQL metastore test will be skipped"

# Chromium (Debian's package) for the dashboard's browser test (tests/test_dashboard_browser.py,
# driven by Playwright, which never downloads a browser of its own); without it that test is
# skipped with the reason.
chromium:
	@test -x /usr/bin/chromium || \
	  { command -v apt-get >/dev/null && { apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1; }; } ; } || \
	  echo "note: could not install chromium; the dashboard's browser test will be skipped"

# wrk (Debian's package), the HTTP load generator of bench/api; without it that benchmark
# tries apt-get itself and stops with the reason if it cannot.
wrk:
	@command -v wrk >/dev/null || \
	  { command -v apt-get >/dev/null && { apt-get install -y -qq wrk >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq wrk >/dev/null 2>&1; }; } ; } || \
	  echo "note: could not install wrk; bench/api needs it (apt-get install wrk)"

# Stops the local stack (`weir up`, `make demo`): every service, Airflow and the dashboard
# included; the data stays in .weir/.
down:
	@test -x $(VENV)/bin/weir && $(VENV)/bin/weir down || echo "nothing to stop (no .venv yet)"

notebook: setup
	$(VENV)/bin/weir notebook

demo: setup
	$(VENV)/bin/weir demo $(DEMO_ARGS)

test: setup chromium test-rust test-python

test-rust:
	@echo "== cargo test (release profile: one profile for tests, extension and benchmarks) =="
	cargo test --release --workspace --locked

test-python:
	@echo "== ruff, pytest =="
	$(VENV)/bin/ruff check python tests bench dags streamlit_app
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup wrk
	$(PY) bench/processor/run.py $(BENCH_ARGS)
	$(PY) bench/lake/run.py --json-out bench/results/lake.json
	$(PY) bench/streaming/run.py --json-out bench/results/streaming.json
	$(PY) bench/api/run.py --json-out bench/results/api.json
	$(PY) bench/dbt/run.py --json-out bench/results/dbt.json
	$(PY) bench/quality/run.py --json-out bench/results/quality.json
	$(PY) bench/dashboard/run.py --json-out bench/results/dashboard.json

lint: setup
	$(VENV)/bin/ruff check python tests bench dags streamlit_app
	cargo clippy --release --workspace --all-targets --locked -- -D warnings

clean:
	rm -rf $(VENV) node_modules python/weir/_native*.so .pytest_cache
