# riskcast — two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock lock-upgrade test test-fast demo bench lint browser-deps clean

# Idempotent: reinstalls only when the lock file or pyproject.toml changed. Every library
# comes from requirements-test.lock, pinned with its hashes (pip refuses a file whose hash
# differs); riskcast itself is then installed editable without resolving anything again.
install: $(STAMP)

$(STAMP): requirements-test.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements-test.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The lock files: requirements.lock (to run riskcast) and requirements-test.lock (the same
# versions plus the test extra), for Python 3.11 on Linux x86_64, every file hashed.
# `make lock` keeps the pins and resolves only what pyproject.toml added or changed;
# `make lock-upgrade` moves every library to the newest version its range allows.
# Commit the result with the demo's figures as they come out afterwards.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml requirements-build.in --python-version 3.11 \
             --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet --custom-compile-command "make lock"
lock lock-upgrade:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q 'uv>=0.5'
	$(UV_COMPILE) $(if $(filter lock-upgrade,$@),--upgrade) --extra postgres -o requirements.lock
	$(UV_COMPILE) $(if $(filter lock-upgrade,$@),--upgrade) --extra test -c requirements.lock -o requirements-test.lock

test: install browser-deps
	$(BIN)/python -m pytest -q --durations=15

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
	$(BIN)/python bench/transport.py
	$(BIN)/python bench/scale.py

# The import contracts in pyproject.toml over every module, jobs/ and dashboards/ included.
lint: install
	$(BIN)/python tools/lint_layers.py

# Browser tests drive Debian's Chromium; install it when we can, skip cleanly when we cannot.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) || \
	    echo "note: chromium/chromedriver not installed; browser tests will skip"; }

clean:
	rm -rf $(VENV) build *.egg-info riskcast-home .pytest_cache
