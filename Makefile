# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TK     := $(VENV)/bin/tk
STAMP  := $(VENV)/.installed

.PHONY: demo test test-heavy lint bench results clean

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

# Two pytest workers, one test file each at a time (module fixtures are built once):
# every test runs torch on one thread, so two cores run two files.
JOBS ?= 2

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n $(JOBS) --dist loadfile

# The zoo's larger models through the export contract (about 4 minutes here).
test-heavy: $(STAMP)
	$(PY) -m pytest -m heavy tests/test_export.py

lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) scripts/bench

results: $(STAMP)
	$(PY) scripts/results.py

clean:
	rm -rf $(VENV) runs build *.egg-info
