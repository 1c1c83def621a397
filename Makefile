# The two commands a newcomer needs: `make demo` and `make test`. Both start with `make install`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint typecheck pytest bench screenshots requirements clean

install: $(STAMP)

# The development set (runtime + tests, type checking, localaws): what the demo and the tests need.
# Production installs requirements.txt alone.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# Demo: dashboard, Celery worker, Celery beat and the local AWS stand-in, in one foreground process.
# `make demo PORT=8080 LOCALAWS_PORT=4567` when those ports are taken. honcho sets its own PORT for
# every process, so the Procfile reads DEMO_PORT.
PORT ?= 8000
LOCALAWS_PORT ?= 4566
demo: export DEMO_PORT = $(PORT)
demo: export LOCALAWS_PORT := $(LOCALAWS_PORT)
demo: export SITE_URL = http://127.0.0.1:$(PORT)
demo: export DJANGO_DEBUG = true
demo: export AWS_ENDPOINT_URL = http://127.0.0.1:$(LOCALAWS_PORT)
demo: export AWS_ACCESS_KEY_ID = localaws
demo: export AWS_SECRET_ACCESS_KEY = localaws
demo: export AWS_DEFAULT_REGION = us-east-1
demo: install
	$(BIN)/python manage.py migrate --no-input
	# config/demo.py: honcho with a grace period the worker's shutdown fits in (Procfile.demo explains the worker line).
	$(BIN)/python -m config.demo --procfile Procfile.demo start

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy .

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The quick loop while editing: everything but the browser and the real-worker tests (`--lf` works too).
test-fast: install
	$(BIN)/pytest -m "not browser and not worker" $(PYTEST_ARGS)

# The README's screenshots: the browser tests write them to var/screenshots/ unless told otherwise; this
# refreshes docs/screenshots/, to be committed on purpose.
screenshots: install
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -m browser $(PYTEST_ARGS)

# Benchmarks print tables; they are not tests (see bench/README.md). BENCH_ARGS="--objects 2000" for a short run.
bench: install
	$(BIN)/python -m bench.scan_bench $(BENCH_ARGS)

# Recompile both pinned trees from pyproject.toml without recording any download address: the runtime
# tree from a venv with the project alone, the development tree as what ".[dev]" adds on top of it.
requirements:
	rm -rf var/req-venv && $(PYTHON) -m venv var/req-venv
	var/req-venv/bin/pip install --quiet .
	var/req-venv/bin/pip freeze --exclude-editable | grep -v -e '^-e' -e '^healthimaging-import-dashboard' > var/req-runtime.txt
	var/req-venv/bin/pip install --quiet ".[dev]"
	var/req-venv/bin/pip freeze --exclude-editable | grep -v -e '^-e' -e '^healthimaging-import-dashboard' \
	  | grep -v -x -F -f var/req-runtime.txt > var/req-dev.txt
	{ echo "# The runtime dependency tree, pinned: what production installs ('pip install -r requirements.txt')."; \
	  echo "# Regenerate with 'make requirements' after changing pyproject.toml."; \
	  cat var/req-runtime.txt; } > requirements.txt
	{ echo "# The development tree on top of the runtime one: tests, type checking, the demo's local AWS."; \
	  echo "# 'make install' installs this. Regenerate with 'make requirements' after changing pyproject.toml."; \
	  echo "-r requirements.txt"; cat var/req-dev.txt; } > requirements-dev.txt
	rm -rf var/req-venv var/req-runtime.txt var/req-dev.txt

clean:
	rm -rf $(VENV) var
