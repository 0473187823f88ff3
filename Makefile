# The two commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: run test install lint format bench bench-api clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

var/dev.env:
	mkdir -p var
	$(BIN)/python scripts/make_dev_env.py > var/dev.env

run: install var/dev.env
	PORT=$(PORT) scripts/run.sh

test: install
	scripts/test.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var/celery var/staticfiles

# Token refresh benchmark (bench/README.md): PostgreSQL and Redis when
# DATABASE_URL / REDIS_URL are set. Options: make bench BENCH_ARGS="--connections 2000"
bench: install
	$(BIN)/python bench/refresh_bench.py $(BENCH_ARGS)

# Runtime API benchmark (bench/README.md): the credentials endpoint next to
# /api/v1/me under wrk. PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
# set. Options: make bench-api BENCH_API_ARGS="--rounds 6 --duration 5"
bench-api: install
	$(BIN)/python bench/api_bench.py $(BENCH_API_ARGS)
