# Tideflow — every entry point. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= .tideflow
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}'

$(BIN)/tideflow: pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ required"; exit 1; }
	@$(PY) -m venv --help >/dev/null 2>&1 && $(PY) -c 'import ensurepip' 2>/dev/null || \
		{ [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/tideflow

.PHONY: install
install: $(BIN)/tideflow ## Create .venv with tideflow and the development tools

.PHONY: run
run: install ## Install and start `tideflow serve` on the embedded default (SQLite in ./.tideflow)
	$(BIN)/tideflow serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

.PHONY: services
services: ## Install and start Postgres (and other services) on loopback, idempotently
	bash scripts/services/up.sh

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy --strict on the package
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/mypy

.PHONY: format
format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests scripts bench
	$(BIN)/ruff format src tests scripts bench

.PHONY: unit
unit: install ## Unit tests only (no services)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

.PHONY: test
test: install services lint ## Install everything, start services, lint, run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: chaos
chaos: install services ## Long chaos/soak loops: 20 rounds of random faults, 60 s pause, 30 s outage (`make test` runs 2)
	TIDEFLOW_CHAOS_ROUNDS=$${TIDEFLOW_CHAOS_ROUNDS:-20} TIDEFLOW_PAUSE_SECONDS=$${TIDEFLOW_PAUSE_SECONDS:-60} \
	TIDEFLOW_OUTAGE_SECONDS=$${TIDEFLOW_OUTAGE_SECONDS:-30} \
	$(BIN)/pytest --timeout 3600 tests/chaos tests/e2e -k 'chaos or soak or survives or pause or kill' $(PYTEST_ARGS)

.PHONY: bench
bench: install services ## All benchmarks incl. the side-by-side run vs Debezium Server (takes hours)
	$(BIN)/python -m bench.compare
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.metrics_overhead
	$(BIN)/python -m bench.transforms_bench --repeat 3
	$(BIN)/python -m bench.snapshot_bench
	$(BIN)/python -m bench.mysql_bench
	$(BIN)/python -m bench.cluster_bench

.PHONY: bench-quick
bench-quick: install services ## Benchmark smoke run (a few minutes each): smaller N, fewer repetitions
	$(BIN)/python -m bench.compare --quick
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.metrics_overhead --rows 100000 --repeat 1
	$(BIN)/python -m bench.transforms_bench --rows 50000
	$(BIN)/python -m bench.snapshot_bench --rows 200000

.PHONY: migration
migration: install ## Regenerate migration 0001 from the models (pre-release only)
	PATH=$(BIN):$$PATH $(BIN)/python scripts/regen_initial_migration.py

.PHONY: clean
clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(DATA_DIR)
