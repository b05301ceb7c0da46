# Everything installs from the project's own files: a pinned uv in .oms/tools, then the
# locked workspace in .venv. Only python3 (3.11+) is needed beforehand.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .oms/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run test test-repeat bench proto lint pins clean

help:
	@echo "make run    start PostgreSQL, NATS and every service with demo data"
	@echo "make test   run the whole test suite against real PostgreSQL and NATS"
	@echo "make test-repeat N=5   the integration and e2e layers N times, the suite beside them"
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

# N runs in a row of the integration and e2e layers while a second copy of the whole suite
# runs beside them (COMPANION=0 leaves it out); fails if any run failed.
N ?= 5
COMPANION ?= 1
test-repeat: install
	$(PY) -m oms_devtools.repeat --runs $(N) $(if $(filter 0,$(COMPANION)),--no-companion)

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
