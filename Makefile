.DEFAULT_GOAL := all
SHELL := /bin/bash

VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: all install install-python install-system install-postgres install-test-tools run monitor format lint typecheck \
        test test-unit test-integration bench bench-quick clean

all: lint typecheck test

install: install-python install-system

install-python:
	@scripts/bootstrap.sh python

install-system:
	@scripts/bootstrap.sh system

install-postgres:
	@scripts/bootstrap.sh postgres

install-test-tools:
	@scripts/bootstrap.sh test-tools

## Run the whole system in the foreground: API :8000, S3 :9000, one worker. Ctrl-C stops.
run: install
	$(BIN)/python scripts/run_local.py

## Prometheus on :9090 scraping `make run`'s stack (a second terminal; same WORKERS=N). Ctrl-C stops.
monitor: install
	@scripts/bootstrap.sh monitor

format: install-python
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lint: install-python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-python
	$(BIN)/mypy

## Everything CI runs: lint, types, unit and integration tests against real services.
test: install install-postgres install-test-tools lint typecheck
	$(BIN)/pytest

test-unit: install-python
	$(BIN)/pytest tests/unit

test-integration: install install-postgres
	$(BIN)/pytest -m integration

## docs/PERFORMANCE.md's figures beside their baselines and targets, in one run (~11 min):
## rewrites its table, its plots and bench/results.json.
bench: install
	$(BIN)/python -m bench

## The same figures on shorter inputs with fewer runs (~3 min); prints, writes no docs.
bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .run *.egg-info
