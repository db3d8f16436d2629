# riskcast — two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast demo bench lint browser-deps clean

# Idempotent: reinstalls only when pyproject.toml changed.
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

test: install browser-deps
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

demo: install
	$(BIN)/riskcast demo

# Each benchmark prints its figures and writes JSON to bench/out/ (see bench/README.md).
bench: install
	$(BIN)/python bench/features.py
	$(BIN)/python bench/ingest_csv.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/explain.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/physionet_cv.py
	$(BIN)/python bench/ingest_standards.py

lint: install
	$(BIN)/lint-imports

# Browser tests drive Debian's Chromium; install it when we can, skip cleanly when we cannot.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) || \
	    echo "note: chromium/chromedriver not installed; browser tests will skip"; }

clean:
	rm -rf $(VENV) build *.egg-info riskcast-home .pytest_cache
