# The daily commands. `make demo` and `make test` work on a fresh clone with only Rust and Python 3.11.
#
# Everything Python lives in .venv: .cargo/config.toml points PYO3_PYTHON at .venv/bin/python, so the venv
# must exist before any cargo command (hence `venv` before `develop`, `test-rust`, `lint`).
# One cargo profile (release) for everything, so dependencies are built once.

PYTHON ?= python3.11
VENV := .venv
VENV_ABS := $(abspath $(VENV))
BIN := $(VENV)/bin
STAMP := $(VENV)/.labelport-tools
# maturin develop installs into the active virtualenv: activate it for every command that needs it.
ACTIVATE := VIRTUAL_ENV=$(VENV_ABS) PATH=$(VENV_ABS)/bin:$$PATH
TOOLS := "maturin>=1.7,<2" "pytest>=7"
# What the tests need besides labelport itself (pytest, requests, httpx, orjson), the vendors' official SDKs
# (witnesses of the simulators' fidelity) and the optional extras (pandas, polars, pyarrow, tqdm, ...).
TEST_REQUIREMENTS := $(wildcard tests/requirements.txt tests/requirements-extras.txt tests/requirements-distributed.txt tests/witness-requirements/*.txt)

.PHONY: help venv develop demo test test-rust test-python bench bench-smoke reliability lint format clean distclean

help:
	@echo "make demo         set up, build, and run the demo against the local Alegion sandbox"
	@echo "make test         set up, build, and run every test (Rust, then Python)"
	@echo "make venv         create .venv with maturin and the test requirements (once)"
	@echo "make develop      build the Rust core (release) into .venv"
	@echo "make test-rust    cargo test --release --no-default-features (no interpreter needed)"
	@echo "make test-python  build, then pytest against the sandbox"
	@echo "make bench        the benchmarks against the peers (BENCHMARKS.md); bench-smoke: seconds, checks they run"
	@echo "make reliability  the fault matrix, 10 seeds x 5,000 records per vendor (RELIABILITY.md)"
	@echo "make lint         cargo fmt --check, clippy -D warnings, ruff (when installed in .venv)"
	@echo "make format       cargo fmt, ruff format (when installed in .venv)"
	@echo "make clean        remove build output and caches; distclean also removes .venv"

venv: $(STAMP)

$(STAMP): $(TEST_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TOOLS) \
		$(foreach r,$(TEST_REQUIREMENTS),-r $(r))
	touch $(STAMP)

develop: venv
	$(ACTIVATE) $(BIN)/maturin develop --release

demo: develop
	$(BIN)/python -m labelport demo

test: develop
	$(ACTIVATE) cargo test --release --no-default-features
	$(ACTIVATE) $(BIN)/pytest

test-rust: venv
	$(ACTIVATE) cargo test --release --no-default-features

test-python: develop
	$(ACTIVATE) $(BIN)/pytest

bench: develop
	$(BIN)/python bench/run.py

bench-smoke: develop
	$(BIN)/python bench/run.py --smoke

reliability: develop
	$(BIN)/python bench/reliability.py

lint: venv
	cargo fmt --check
	$(ACTIVATE) cargo clippy --release --all-targets -- -D warnings
	@if [ -x $(BIN)/ruff ]; then \
		$(BIN)/ruff check python tests && $(BIN)/ruff format --check python tests; \
	else \
		echo "ruff is not installed in $(VENV): skipped (install it with $(BIN)/pip install ruff)"; \
	fi

format: venv
	cargo fmt
	@if [ -x $(BIN)/ruff ]; then \
		$(BIN)/ruff format python tests && $(BIN)/ruff check --fix python tests; \
	else \
		echo "ruff is not installed in $(VENV): skipped (install it with $(BIN)/pip install ruff)"; \
	fi

clean:
	cargo clean
	rm -rf .pytest_cache dist
	find python tests -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f python/labelport/*.so python/labelport/*.pyd

distclean: clean
	rm -rf $(VENV)
