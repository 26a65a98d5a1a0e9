# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TK     := $(VENV)/bin/tk
STAMP  := $(VENV)/.installed

.PHONY: demo test browser test-heavy lint bench bench-serve results mutate clean

# The venv is rebuilt only when a pyproject.toml changes. The tk-timm and tk-openvino
# plugins are distributions of their own (as a third party's would be): pip cannot
# take them as relative paths inside the dev extra, so they are installed beside it
# (the extra brings timm and openvino).
$(STAMP): pyproject.toml plugins/tk-timm/pyproject.toml plugins/tk-openvino/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -e plugins/tk-timm -e plugins/tk-openvino
	touch $(STAMP)

demo: $(STAMP)
	$(TK) train circle --name demo --overwrite
	$(TK) export runs/circle/demo --format all --overwrite
	$(TK) list models

# Two pytest workers, one test file each at a time (module fixtures are built once):
# every test runs torch on one thread, so two cores run two files.
JOBS ?= 2

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n $(JOBS) --dist loadfile

# The page at / is tested in a real headless Chromium (tests/test_serve_ui.py): Debian's
# chromium + chromium-driver, installed when missing and apt-get can run (as root, or
# sudo without a password). Best effort: anywhere else the browser test skips, saying why.
browser:
	-@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  command -v apt-get >/dev/null && SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n") && { \
	    $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || { \
	      $$SUDO apt-get update -qq && \
	      $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }; }; } || \
	  echo "make: chromium + chromium-driver not installed: the browser test will skip"

# The zoo's larger models through the export contract (about 4 minutes here).
test-heavy: $(STAMP)
	$(PY) -m pytest -m heavy tests/test_export.py

# Mutation testing with mutmut (scripts/mutate.py, docs/testing.md): minutes per
# module, so not part of `make test`. `make mutate MODULES="verify tune"` runs some.
MODULES ?=

mutate: $(STAMP)
	$(PY) scripts/mutate.py $(MODULES)

lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# make bench QUICK=1: the reduced sizes (a smoke run, noisier ratios), written to
# build/bench-quick.md so docs/benchmarks.md keeps the full run's figures.
bench: $(STAMP)
	$(PY) scripts/bench $(if $(QUICK),--quick --out build/bench-quick.md)

# tk serve against LitServe and the stack's ceiling under wrk (apt-get install wrk;
# LitServe, the peer, is skipped when not installed): docs/benchmarks-serve.md.
bench-serve: $(STAMP)
	$(PY) scripts/bench_serve.py

results: $(STAMP)
	$(PY) scripts/results.py

clean:
	rm -rf $(VENV) runs build *.egg-info
