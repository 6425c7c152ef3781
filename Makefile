# Everything runs from the project's own venv, created on first use. The install step reruns only
# when pyproject.toml changes (stamp file), so `make test` is quick on the second run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.closeflow-installed

.PHONY: chromium install run test lint format migrate bench bench-webhooks bench-funnel settings clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/closeflow dev

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/pytest -q  # workers, distribution and the 20 slowest: pyproject's addopts

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	$(BIN)/closeflow migrate

bench: $(STAMP)
	$(BIN)/python -m bench.journeys

bench-webhooks: $(STAMP)
	$(BIN)/python -m bench.webhooks

# BENCH_FUNNEL_N stage changes (default 1000000); PostgreSQL too when CLOSEFLOW_TEST_POSTGRES_URL is set
bench-funnel: $(STAMP)
	$(BIN)/python -m bench.funnel

# The page tests drive Debian's chromium; install it when it is missing and we may.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "chromium is missing: apt-get install chromium (as root)" >&2; exit 1; fi; }

settings: $(STAMP)
	@$(BIN)/closeflow settings

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache .ruff_cache
