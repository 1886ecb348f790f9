# mhpo-vl: every user-facing target runs `setup` first, so each is one command on a fresh machine.
# Overrides: make setup PYTHON=python3.11 TORCH=torch==2.6.0   (e.g. a CUDA build on a GPU box)
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mhpo-setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint demo bench bench-loss compare clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes, so a second `make setup` is a no-op.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check mhpo_vl data_prep eval tests

clean:
	rm -rf $(VENV) runs build *.egg-info
