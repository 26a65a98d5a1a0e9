# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TK     := $(VENV)/bin/tk
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench results clean

# The venv is rebuilt only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(TK) train circle --name demo --overwrite
	$(TK) export runs/circle/demo --format all --overwrite
	$(TK) list models

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) scripts/bench

results: $(STAMP)
	$(PY) scripts/results.py

clean:
	rm -rf $(VENV) runs build *.egg-info
