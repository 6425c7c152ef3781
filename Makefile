# Everything runs from the project's own venv, created on first use. The install step reruns only
# when pyproject.toml changes (stamp file), so `make test` is quick on the second run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.closeflow-installed

.PHONY: install run test lint format migrate bench bench-webhooks settings clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/closeflow dev

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

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

settings: $(STAMP)
	@$(BIN)/closeflow settings

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache .ruff_cache
