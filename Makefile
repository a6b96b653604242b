# The two commands of the README: `make run` and `make test`. Everything else is their parts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

# The end-to-end tests run a second time with RabbitMQ as the broker.
TEST_RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672//

.PHONY: run test test-e2e-rabbitmq lint fmt migrate bench-campaign bench-api bench-faults clean

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

## test: start local PostgreSQL/Redis/RabbitMQ if installed but down (and install chromium and
## pgbouncer from apt where missing), then run the whole suite
## (its end-to-end tests on Redis), then the end-to-end tests again on RabbitMQ. With
## PYTEST_ARGS (a subset), only the first run.
test: $(VENV)/.dev
	./scripts/ensure_services.sh
	./scripts/ensure_chromium.sh
	./scripts/ensure_pgbouncer.sh
	$(PY) -m pytest $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ]; then $(MAKE) --no-print-directory test-e2e-rabbitmq; fi

test-e2e-rabbitmq: $(VENV)/.dev
	./scripts/ensure_services.sh
	CELERY_BROKER_URL=$(TEST_RABBITMQ_URL) $(PY) -m pytest tests/e2e $(E2E_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

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

bench-faults: $(VENV)/.dev
	$(PY) bench/faults.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
