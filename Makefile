# Everything installs from the project's own files: a pinned uv in .oms/tools, then the
# locked workspace in .venv. Only python3 (3.11+) is needed beforehand.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .oms/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run test bench proto lint pins clean

help:
	@echo "make run    start PostgreSQL, NATS and every service with demo data"
	@echo "make test   run the whole test suite against real PostgreSQL and NATS"
	@echo "make bench  measure order throughput and latency next to pgbench"
	@echo "make proto  regenerate the Python stubs from proto/"
	@echo "make lint   ruff, buf lint and the stale-stub check"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.9,<0.14"

$(VENV)/.synced: $(UV) pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --all-packages
	@touch $@

install: $(VENV)/.synced

run: install
	$(PY) -m oms_devtools.run

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m oms_devtools.bench

proto: install
	$(PY) -m oms_devtools.protogen

lint: install
	$(VENV)/bin/ruff check .
	$(PY) -m oms_devtools.protogen --lint
	$(PY) -m oms_devtools.protogen --check

pins: $(UV)
	$(PY) -m oms_devtools.pins $(UV)
	$(UV) sync --all-packages

clean:
	rm -rf $(VENV) .oms/tools
