# email-status-worker: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit integration mutation mutation-full demo kafka-up kafka-down kafka-jars tools chart-check image-check venv lock bench bench-smoke clean

$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock -r requirements-test.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

venv: $(STAMP)

kafka-jars:
	@$(PYTHON) scripts/kafka.py fetch >/dev/null

kafka-up: kafka-jars  ## start a local broker; prints its bootstrap address
	@$(PYTHON) scripts/kafka.py up

kafka-down:  ## stop it; leaves no process behind
	@$(PYTHON) scripts/kafka.py down

tools:  ## helm and the manifest validator, built with `go install` into ~/.cache
	@bash scripts/install-tools.sh >/dev/null

chart-check: tools  ## helm lint --strict, render every scenario, validate against the Kubernetes types
	bash scripts/chart-check.sh

image-check:  ## hadolint the Dockerfile; install as the image does into a fresh venv and run it
	bash scripts/image-check.sh

lint: venv  ## the import-layering contract, ruff and mypy (configuration in pyproject.toml)
	$(BIN)/lint-imports
	$(BIN)/ruff check worker
	$(BIN)/ruff check --select F,I tests bench scripts examples
	$(BIN)/mypy

test:  ## everything CI runs (scripts/test.sh: mutation; lint+unit beside chart, image and bench smoke; integration in two lanes)
	@$(MAKE) --no-print-directory -j3 venv kafka-jars tools   # side by side: helm's go build is the long one
	MAKE="$(MAKE)" bash scripts/test.sh

unit: venv
	$(BIN)/python -m pytest -ra tests/unit

integration: venv kafka-jars
	$(BIN)/python -m pytest -ra tests/integration

mutation: venv  ## mutmut on the core modules (and tests) changed since tests/mutation/baseline.json; fails on a lower score or an unaccepted survivor
	$(BIN)/python scripts/mutation.py

mutation-full: venv  ## mutmut on the whole pure core (about an hour with one child); rewrites tests/mutation/baseline.json
	$(BIN)/python scripts/mutation.py --full

demo: venv kafka-jars  ## local Kafka + the provider simulator + the worker, until Ctrl-C
	$(BIN)/python scripts/demo.py

bench: venv kafka-jars  ## every benchmark at full size (~31 minutes); numbers in bench/README.md
	$(BIN)/python -m bench

bench-smoke: venv kafka-jars  ## every benchmark at quick size (~3 minutes): prints the table, fails on a failed check
	$(BIN)/python -m bench --quick

lock:  ## re-pin requirements.lock and requirements-test.lock from pyproject.toml
	bash scripts/lock.sh

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis build *.egg-info
