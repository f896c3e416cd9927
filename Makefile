# The README's two commands are `make demo` and `make test`; .ci/run runs `make test`.
# Everything installs into .venv from the project's own files (pyproject.toml, tooling/).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint typecheck checks pytest kafka-jars tools clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns about every editable install in a banner of asterisks: noise here
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## demo: install, start the embedded broker and run the main job on it
demo: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo

## test: install, then lint, type-check, check generated files and run every test tier
test: $(STAMP) kafka-jars tools checks pytest

kafka-jars:
	@$(BIN)/python tooling/kafka/kafka_broker.py fetch

# kcat, for the test of the README's kcat one-liner, headless Chromium with its driver, for
# the console's browser tests, and Prometheus, for the test that scrapes `mesh dev` (all from
# Debian's packages)
tools:
	@bash tooling/kcat/install
	@bash tooling/browser/install
	@bash tooling/prometheus/install

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

checks: lint typecheck
	$(BIN)/mesh schemas check
	$(BIN)/mesh topics validate
	$(BIN)/mesh topics validate --dir topics/overlays/cluster

# The unit tier is pure CPU: two workers halve it on two cores. The broker tiers stay serial
# (one broker per session, processes and ports of their own, timing under load).
pytest: $(STAMP)
	$(BIN)/pytest tests/unit -n 2
	$(BIN)/pytest tests --ignore=tests/unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
