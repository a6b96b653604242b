# The two commands of the README: `make run` and `make test`. Everything else is their parts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run test lint fmt migrate bench-campaign bench-api clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## run: set up on first use, then serve web + worker + beat + fake providers (Ctrl-C stops all)
run: $(VENV)/.runtime
	$(PY) -m signal_project.devstack

## test: start local PostgreSQL/Redis if installed but down, then run the whole suite
test: $(VENV)/.dev
	./scripts/ensure_services.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate

## bench-campaign / bench-api: the throughput and latency benchmarks (see bench/RESULTS.md)
bench-campaign: $(VENV)/.dev
	./scripts/ensure_services.sh
	$(PY) bench/campaign.py $(BENCH_ARGS)

bench-api: $(VENV)/.dev
	./scripts/ensure_services.sh
	$(PY) bench/api.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
