# Two commands on a fresh machine: `make demo` runs the product, `make test` runs the tests.
# Each creates the virtualenv it needs (./.venv) from scratch; a stamp file skips reinstalling.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CATALOG ?= $(if $(wildcard ../shared/data/fashion/feed.jsonl),../shared/data/fashion/feed.jsonl,https://dummyjson.com/products)
STORE ?= .demo/store
MODEL ?= models/fashion-starter
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test test-fast lint bench bench-quick setup setup-dev synth chromium train-starter measure-latency

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Run-time packages only: what the Lambdas, the CLI and the local server need.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Everything the test suite needs (export tooling, CDK, browser driver).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,export,infra]'
	touch $@ $(VENV)/.runtime

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

# Each run adds a version; --keep 2 keeps the new one and the one before it (and clears dead builds).
demo: setup
	$(BIN)/fashion-search build --catalog "$(CATALOG)" --store "$(STORE)" --model "$(MODEL)" --keep 2
	@printf '\n  Search page: http://$(HOST):$(PORT)/   (Ctrl-C stops the server)\n\n'
	@# Open a browser once the server listens, where there is a desktop to show it on.
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ]; then \
	  ( for _ in $$(seq 120); do (exec 3<>/dev/tcp/$(HOST)/$(PORT)) 2>/dev/null && break; sleep 0.5; done; \
	    $(BIN)/python -m webbrowser -t "http://$(HOST):$(PORT)/" >/dev/null 2>&1 || true ) & \
	fi
	$(BIN)/fashion-search serve --store "$(STORE)" --model "$(MODEL)" --host $(HOST) --port $(PORT)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/mypy layers/core/fashion_search functions infra

test: lint node_modules/.stamp chromium
	$(BIN)/pytest

# The edit-test loop (< 1 min on 2 cores): the suite without these markers (README, top). CI runs `make test`.
FAST_MARKERS := not browser and not heavy and not slow and not hostile
test-fast: $(VENV)/.dev
	$(BIN)/pytest -q -m "$(FAST_MARKERS)"

# Debian's chromium for the browser tests (tests/e2e); Playwright, which drives it, comes from PyPI
# with the dev extra (its own browser download needs more than PyPI).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The CDK CLI pinned by package-lock.json (for `make synth`, `npx cdk deploy` and tests/infra);
# reinstalled whenever the lock changes.
node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The CDK app's own packages (cdk.json runs .venv's Python); setup-dev includes them.
$(VENV)/.infra: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[infra]'
	touch $@

synth: $(VENV)/.infra node_modules/.stamp
	node_modules/.bin/cdk synth --quiet

# The benchmark suite (bench/): measures on this machine, writes BENCHMARKS.md and docs/bench/*.png
# (< 30 min on 2 cores; run it on a quiet machine). bench-quick is the CI smoke run (< 3 min), written
# to bench-results/. ARGS passes options through, e.g. `make bench ARGS="--only search"`.
$(VENV)/.bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,export,bench]'
	touch $@ $(VENV)/.runtime

bench: $(VENV)/.bench
	$(BIN)/python -m bench $(ARGS)

bench-quick: $(VENV)/.bench
	$(BIN)/python -m bench --quick $(ARGS)

# The offline starter model (model_export/starter): < 45 min on 2 cores, seeded; writes models/fashion-starter.
train-starter: setup-dev
	$(BIN)/fashion-search train-starter --out models/fashion-starter

# CLIP ViT-B/32 (random weights) encode latency and file sizes, fp32 vs int8: the README's table.
measure-latency: setup-dev
	$(BIN)/python -m model_export.measure_latency
