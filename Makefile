# riverbed: `make run` (live demo) and `make test` (the whole suite) on a fresh machine.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall when pyproject.toml changes; a no-op (fast) otherwise.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: help setup system-deps kafka-up kafka-down kafka-status run test test-unit test-fast lint format typecheck bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

system-deps: ## check Java 17+/Maven, install kcat, prometheus, chromium (Debian, as root)
	@deploy/install-system-deps.sh

setup: system-deps $(STAMP) ## everything: system packages, .venv, Kafka jars (idempotent)
	@$(BIN)/riverbed broker fetch

kafka-up: setup ## start the local Kafka broker on 127.0.0.1:9092
	$(BIN)/riverbed broker start

kafka-down: ## stop the local Kafka broker this project started
	@if [ -x $(BIN)/riverbed ]; then $(BIN)/riverbed broker stop; else echo "nothing to stop (no .venv)"; fi

kafka-status: ## is the local broker running?
	$(BIN)/riverbed broker status

run: setup ## live demo: broker + worker + drifting stream + live accuracy (Ctrl-C stops; FRESH=1 starts clean)
	$(BIN)/riverbed demo $(if $(FRESH),--fresh)

test: setup ## the whole suite against its own real Kafka broker (3 processes on 2 cores, one broker)
	$(BIN)/python -m pytest -n 3 --dist loadgroup --durations=25

test-unit: $(STAMP) ## only the tests that need no broker
	$(BIN)/python -m pytest -m "not integration"

test-fast: $(STAMP) ## the fast loop: unit tests and doctests, in-process (no broker, no other process)
	$(BIN)/python -m pytest -n 2 -m "not integration and not process" --durations=10

lint: $(STAMP) ## ruff, and the import rules (import-linter, pyproject's [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app models tests bench
	$(BIN)/lint-imports --no-cache

format: $(STAMP) ## ruff format + fixes
	$(BIN)/ruff format app models tests bench
	$(BIN)/ruff check --fix .

typecheck: $(STAMP) ## mypy (on the installed names: app/ is riverbed, models/ riverbed.models)
	@rm -rf .cache/typecheck && mkdir -p .cache/typecheck/riverbed
	@for f in app/*; do ln -s "$(CURDIR)/$$f" .cache/typecheck/riverbed/; done
	@ln -s "$(CURDIR)/models" .cache/typecheck/riverbed/models
	$(BIN)/mypy

bench: setup ## riverbed vs River in memory, a raw aiokafka loop and Quix Streams, one run
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench.compare --events 100000
	$(BIN)/python -m bench.candidates --events 20000
	$(BIN)/python -m bench.checkpoint_speed --events 40000
	$(BIN)/python -m bench.profile_split --events 100000

clean: kafka-down ## stop the broker, delete .venv, caches and broker data
	rm -rf $(VENV) .cache .riverbed *.egg-info .mypy_cache .ruff_cache tests/output
