# Spectacles for Python. `make help` lists the targets.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$$HOME/.local/bin/uv")
PYTEST_ARGS ?=

.PHONY: help uv sync test test-rmq4 lint fmt up demo down logs ps e2e bench new-worker
.PHONY: up-cluster demo-cluster e2e-cluster

help:
	@echo "make demo        the whole stack against the built-in Discord simulator (no token needed)"
	@echo "make up          the whole stack against real Discord (needs DISCORD_TOKEN in .env)"
	@echo "make down|logs|ps  stop the stack, follow its logs, list its services"
	@echo "make test        unit + integration tests (needs RabbitMQ on AMQP_URL)"
	@echo "make test-rmq4   the fault tests (marker rmq4) against a throw-away RabbitMQ 4 container"
	@echo "make lint        ruff check, ruff format --check, mypy --strict"
	@echo "make fmt         ruff format + ruff check --fix"
	@echo "make e2e         build the images and run the demo stack end to end"
	@echo "make up-cluster / demo-cluster   the same on a 3-node RabbitMQ cluster"
	@echo "make e2e-cluster a RabbitMQ node killed under load: nothing lost, the bot keeps working"
	@echo "make bench       benchmarks; results go to bench/results/"
	@echo "make new-worker NAME=foo   scaffold workers/foo"

# Installs uv when missing, so `make test` works on a machine with only Python and make.
uv:
	@command -v uv >/dev/null 2>&1 || [ -x "$$HOME/.local/bin/uv" ] || python3 -m pip install --quiet uv \
	  || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet --break-system-packages uv

sync: uv
	@$$(command -v uv || echo $$HOME/.local/bin/uv) sync --frozen

test: sync
	@$$(command -v uv || echo $$HOME/.local/bin/uv) run --frozen pytest $(PYTEST_ARGS)

test-rmq4: sync
	@bash scripts/rabbit4.sh $(PYTEST_ARGS)

lint: sync
	@UV=$$(command -v uv || echo $$HOME/.local/bin/uv); \
	$$UV run --frozen ruff check . && \
	$$UV run --frozen ruff format --check . && \
	$$UV run --frozen mypy --strict packages/*/src workers/*/src

fmt: sync
	@UV=$$(command -v uv || echo $$HOME/.local/bin/uv); \
	$$UV run --frozen ruff format . && $$UV run --frozen ruff check --fix .

up demo down logs ps:
	@bash scripts/stack.sh $@

e2e:
	@bash tests/e2e/run.sh

up-cluster demo-cluster:
	@bash scripts/stack.sh $@

e2e-cluster:
	@bash tests/e2e/run_cluster.sh

bench: sync
	@$$(command -v uv || echo $$HOME/.local/bin/uv) run --frozen python bench/run_all.py $(BENCH_ARGS)

new-worker: sync
	@test -n "$(NAME)" || { echo "usage: make new-worker NAME=my-worker" >&2; exit 2; }
	@$$(command -v uv || echo $$HOME/.local/bin/uv) run --frozen python scripts/new_worker.py "$(NAME)"
