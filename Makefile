# bwp-worker: every developer and CI entry point. `make demo` and `make test` create the
# virtual environment on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test test-fast lint format typecheck check chaos bench lock clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bwp-worker needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## The demo: embedded SQS, Redis, Buy with Prime API and OMS; exit 0 when the OMS ended right.
demo: $(STAMP)
	$(BIN)/bwp-worker demo

## The whole test suite (unit, integration, end-to-end with real processes).
test: $(STAMP)
	$(BIN)/pytest

## Unit tests only: seconds.
test-fast: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## The chaos suite alone, three runs in a row (it also runs inside `make test`).
chaos: $(STAMP)
	for run in 1 2 3; do $(BIN)/pytest tests/chaos -q -s || exit 1; done

## Side-by-side benchmark (docs/performance.md), ~5 min: make bench EVENTS=600 LATENCY_MS=0,100
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(EVENTS),--events $(EVENTS)) $(if $(LATENCY_MS),--latency-ms $(LATENCY_MS)) $(BENCH_ARGS)

## The image's pinned, hashed dependencies (Dockerfile), resolved from pyproject.toml for the
## image's platform (CPython 3.11, Linux x86_64) whatever machine runs this. Commit both files;
## tests/unit/test_lock.py fails when they and pyproject.toml disagree.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock"
lock: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(LOCK_ARGS) pyproject.toml -o requirements.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(BIN)/uv pip compile $(LOCK_FLAGS) $(LOCK_ARGS) - -o requirements-build.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
