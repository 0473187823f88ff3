# The commands: `make run` (the portal as it ships), `make dev` (the same with
# debug on and an autoreloading server) and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
# Where make run keeps its database, broker, keys and collected static files.
VAR_DIR := $(or $(PORTAL_VAR_DIR),var)

.PHONY: run dev test install lint format bench bench-api clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(VAR_DIR)/dev.env: | $(BIN)/python
	mkdir -p $(VAR_DIR)
	$(BIN)/python scripts/make_dev_env.py > $@.tmp && mv $@.tmp $@

run: install $(VAR_DIR)/dev.env
	PORT=$(PORT) scripts/run.sh

dev: install $(VAR_DIR)/dev.env
	PORT=$(PORT) scripts/dev.sh

test: install
	scripts/test.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VAR_DIR)/celery $(VAR_DIR)/staticfiles

# Token refresh benchmark (bench/README.md): PostgreSQL and Redis when
# DATABASE_URL / REDIS_URL are set. Options: make bench BENCH_ARGS="--connections 2000"
bench: install
	$(BIN)/python bench/refresh_bench.py $(BENCH_ARGS)

# Runtime API benchmark (bench/README.md): the credentials endpoint next to
# /api/v1/me under wrk. PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
# set. Options: make bench-api BENCH_API_ARGS="--rounds 4 --duration 10"
bench-api: install
	$(BIN)/python bench/api_bench.py $(BENCH_API_ARGS)
