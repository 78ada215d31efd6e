# cryptoproject: the two commands of the quick start are `make demo` and `make test`.
# Everything else here is a step they run, or a tool for operators and developers.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
STAMP := $(VENV)/.requirements.sha1
# Everything make runs is local development. The settings default to production (DJANGO_DEBUG=false), so say it
# explicitly; a production-like local run: `make migrate DJANGO_DEBUG=false DJANGO_SECRET_KEY=...`.
DJANGO_DEBUG ?= true
export DJANGO_DEBUG
# pip itself, pinned (not in requirements/*.txt, which pip installs): the version the development venv was set up with.
PIP_VERSION := 26.3
REQ_SHA := $(shell cat requirements/base.txt requirements/dev.txt | sha1sum | cut -c1-40)

.PHONY: help setup services services-down services-status services-check migrate topics demo demo-run live test lint format \
        typecheck pytest services-down-workers check bench bench-alerts bench-notify bench-ingest bench-backtest bench-latency bench-history bench-scale bench-peer bench-books peer-venv history-demo prediction-demo chaos soak lock clean-stack

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# --------------------------------------------------------------------------------------------- set-up
setup: ## virtualenv, pinned requirements, apt packages when missing, Kafka jars, a local .env (idempotent)
	@bash scripts/stack.sh install
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed ($(PYTHON))"; exit 1; }; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@if [ "$$(cat $(STAMP) 2>/dev/null)" != "$(REQ_SHA)" ]; then \
	  $(PY) -m pip install -q "pip==$(PIP_VERSION)" && \
	  $(PY) -m pip install -q --require-hashes -r requirements/dev.txt && \
	  echo "$(REQ_SHA)" > $(STAMP); \
	fi
	@bash scripts/stack.sh jars
	@bash scripts/dev_env.sh .env

services: setup ## start Kafka, PostgreSQL and Redis (idempotent)
	@bash scripts/stack.sh up

services-down: ## stop Kafka, PostgreSQL and Redis
	@bash scripts/stack.sh down

services-status: ## which servers run where
	@bash scripts/stack.sh status

services-check: services ## show that services/services-down are idempotent (all servers answer after each)
	@bash scripts/check_services.sh

migrate: services ## apply database migrations
	@$(MANAGE) migrate --noinput

topics: services ## create the Kafka topics (idempotent)
	@$(MANAGE) create_topics

# --------------------------------------------------------------------------------------------- run
# What the demo's Binance simulator replays (Procfile, sim-binance): the demo users' price alerts are placed on it.
DEMO_BINANCE_REPLAY = data/binance-spot-ws/btcusdt_20240808.gz data/binance-spot-ws/btcusdt_20240809.gz \
	data/binance-trade-csv/trxusdt_trade_stream_2025-03-04.csv
demo: migrate topics history-demo backtest-demo prediction-demo ## the whole pipeline on the bundled real trades; prints the dashboard URL
	@$(MANAGE) collectstatic --noinput -v 0
	@$(MANAGE) ensure_demo_user
	@echo
	@$(MANAGE) replay_summary --replay $(DEMO_BINANCE_REPLAY) > .stack/demo-prices.json
	@$(MANAGE) seed_demo_alerts --prices .stack/demo-prices.json --sms --telegram
	@echo "  Dashboard:  http://127.0.0.1:8000/"
	@echo "  My alerts:  http://127.0.0.1:8000/alerts/  (sign in as a demo user: the price alerts fire within minutes)"
	@echo "  Admin:      http://127.0.0.1:8000/admin/   (user demo / password demo)"
	@echo "  API docs:   http://127.0.0.1:8000/api/v1/docs"
	@echo "  SMS sent:   http://127.0.0.1:9461/_messages   (Twilio stand-in; also .stack/standins/twilio.jsonl)"
	@echo "  Telegram:   http://127.0.0.1:9462/_messages   (Bot API stand-in; also .stack/standins/telegram.jsonl)"
	@echo "  Stop with Ctrl-C (the servers keep running: make services-down stops them)."
	@echo
	@# -e /dev/null: honcho would put .env over the environment; the settings read .env themselves, the environment
	@# winning (so a shell pointed at another stack with scripts/stack_env.sh N keeps it).
	@$(VENV)/bin/honcho -e /dev/null -f Procfile start

# The bundled Binance archive files (data/binance-klines), imported over HTTP from an in-process mirror of them:
# years of hourly BTCUSDT candles and three 1m days. Verified by CHECKSUM; a re-run is a quick no-op (cache).
history-demo: migrate ## import the bundled BTCUSDT history (1h 2017-08..2022-02, 1m 2020-01-01..03)
	@$(MANAGE) import_history --mirror data/binance-klines --symbol BTCUSDT --interval 1h --from 2017-08-01 --to 2022-02-28
	@$(MANAGE) import_history --mirror data/binance-klines --symbol BTCUSDT --interval 1m --from 2020-01-01 --to 2020-01-03

# One sample backtest on those years of hourly candles, ready to open at /backtests/ (stored once: --reuse).
backtest-demo: history-demo ## backtest an SMA crossover on the bundled hourly BTCUSDT history
	@$(MANAGE) backtest --strategy sma_cross --param fast=24 --param slow=96 --symbol BTCUSDT --interval 1h \
		--from 2017-08-01 --to 2022-02-28 --reuse

# Price prediction (docs/PREDICTION.md): walk-forward validation against naive baselines, then the active model
# live inference uses. The 1h model is the one the docs measure; the 1m model, on the three bundled 1m days,
# makes the live replay show next-minute predictions within minutes of starting (the 1h one predicts hourly).
prediction-demo: history-demo ## train the BTCUSDT price-direction models on the bundled history (progress bar)
	@$(MANAGE) train_model --exchange binance --symbol BTCUSDT --interval 1h --from 2017-08-01 --to 2022-02-28
	@$(MANAGE) train_model --exchange binance --symbol BTCUSDT --interval 1m --from 2020-01-01 --to 2020-01-03 --folds 3

live: migrate topics ## the same pipeline against the real exchanges (needs internet)
	@$(MANAGE) collectstatic --noinput -v 0
	@$(VENV)/bin/honcho -e /dev/null -f Procfile.live start

# --------------------------------------------------------------------------------------------- checks
lint: setup ## ruff format --check and ruff check
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/ruff check .

format: setup ## apply ruff's formatting and safe fixes
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

typecheck: setup ## mypy with django-stubs
	@$(VENV)/bin/mypy .

# The suite runs on PYTEST_WORKERS pytest-xdist workers (default 3 on the 2 cores: the tests wait on servers and child
# processes much of the time), each on a stack of its own (tests/stacks.py: worker N on scripts/stack_env.sh stack
# PYTEST_STACK_BASE + N, default 20 + N, or 20 + 4 S + N on stack S; started when down and left running like
# `make services`; `make services-down-workers` stops them). A module's tests stay on one worker (loadfile): its
# module fixtures start once, and the tests that use a fixed stack of their own (6, 11/12) never overlap. The longest
# modules go first (tests/durations.json). Serially, on this shell's stack: make pytest PYTEST_WORKERS=0
PYTEST_WORKERS ?= 3

pytest: services ## the test suite with coverage (fails under 90%) on PYTEST_WORKERS xdist workers (0: serially)
	@mkdir -p artifacts
	@$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --junitxml=artifacts/junit.xml --cov --cov-report=term --cov-report=xml:artifacts/coverage.xml \
		$(PYTEST_ARGS)

services-down-workers: ## stop the stacks of make pytest's workers (see PYTEST_WORKERS)
	@base=$$($(PY) -c 'from tests.stacks import worker_stack_base; print(worker_stack_base())') && \
	for n in 0 1 2 3; do \
	  ( eval "$$(bash scripts/stack_env.sh $$((base + n)))" && \
	    if [ -d "$$STACK_DIR" ]; then bash scripts/stack.sh down; fi ); \
	done

# The quick loop: no server is started, and the tests run are those marked unit (whole modules that need no Kafka,
# PostgreSQL or Redis), on PYTEST_WORKERS workers without stacks of their own (PYTEST_WORKER_STACKS=off).
check: lint typecheck ## lint, type checks and the tests that need no server (no stack started; about 2 minutes)
	@PYTEST_WORKER_STACKS=off $(VENV)/bin/pytest -m unit -n $(PYTEST_WORKERS) -q $(PYTEST_ARGS)

test: lint typecheck services-check pytest ## lint, type checks, the stack scripts' idempotence and the whole suite

# --------------------------------------------------------------------------------------------- benchmarks
bench: migrate topics ## full chain at --speed 0 on >= 1M real trades (see docs/BENCHMARKS.md)
	@$(PY) -m benchmarks.pipeline $(BENCH_ARGS)

bench-ingest: topics ## simulator -> ingest -> Kafka at --speed 0
	@$(PY) -m benchmarks.ingest $(BENCH_ARGS)

bench-backtest: setup ## one backtest and 1,000-combination sweeps on the 39,635 bundled hourly bars
	@$(PY) -m benchmarks.backtest $(BENCH_ARGS)

bench-latency: migrate topics ## exchange event time -> browser at 1,000 trades/s
	@$(PY) -m benchmarks.latency $(BENCH_ARGS)

bench-scale: migrate topics ## insert cost at 0/10M/50M stored trades, retention, footprint, query latency, many symbols (bench-results/scale.json)
	@$(PY) -m benchmarks.scale $(BENCH_ARGS)

bench-alerts: migrate ## store chain with 10,000 alert rules over 100 markets vs none, same run (bench-results/alerts.json)
	@$(PY) -m benchmarks.alerts $(BENCH_ARGS)

bench-notify: migrate ## outbox sender's in-app deliveries/s, batched vs one at a time, same run (bench-results/notify.json)
	@$(PY) -m benchmarks.notify $(BENCH_ARGS)

bench-history: migrate ## history import (candles/s, trade rows/s next to a plain COPY) and backtests (one run, 1,000-run sweeps)
	@$(PY) -m benchmarks.history $(BENCH_ARGS)
	@$(PY) -m benchmarks.backtest

PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.requirements.sha1
PEER_SHA := $(shell sha1sum requirements/peer.txt | cut -c1-40)

peer-venv: ## cryptofeed in .venv-peer from requirements/peer.txt (for bench-peer and bench-books)
	@if [ ! -x $(PEER_VENV)/bin/python ]; then $(PYTHON) -m venv $(PEER_VENV); fi
	@if [ "$$(cat $(PEER_STAMP) 2>/dev/null)" != "$(PEER_SHA)" ]; then \
	  $(PEER_VENV)/bin/python -m pip install -q -r requirements/peer.txt && echo "$(PEER_SHA)" > $(PEER_STAMP); \
	fi

bench-peer: migrate topics peer-venv ## this project against cryptofeed on the same simulator stream (bench-results/peer.json)
	@$(PY) -m benchmarks.peer $(BENCH_ARGS)

bench-books: setup peer-venv ## Binance books: ours against cryptofeed's on the same simulator depth stream (bench-results/books.json)
	@$(PY) -m benchmarks.books_peer $(BENCH_ARGS)

# --------------------------------------------------------------------------------------------- reliability
chaos: setup ## fault-injection suite on stacks of its own (>= 200k real trades per scenario, then the order books; docs/RELIABILITY.md)
	@$(PY) -m chaos $(CHAOS_ARGS)

# SOAK_MINUTES (60) and SOAK_STACK (15) come from the environment or the command line: make soak SOAK_MINUTES=4
soak: setup ## the whole pipeline for SOAK_MINUTES (60) at 2,000 trades/s: RSS, lag, push p99, errors (docs/RELIABILITY.md)
	@$(PY) -m benchmarks.soak $(SOAK_ARGS)

# --------------------------------------------------------------------------------------------- maintenance
lock: ## re-pin requirements/*.txt (with hashes) from requirements/*.in
	@bash scripts/lock.sh

clean-stack: services-down ## delete all local data (Kafka, PostgreSQL, Redis)
	@rm -rf .stack
