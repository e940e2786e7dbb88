# The daily commands. `make demo` and `make test` work on a fresh clone with only Rust and Python 3.11.
#
# Everything Python lives in .venv: .cargo/config.toml points PYO3_PYTHON at .venv/bin/python, so the venv
# must exist before any cargo command (hence `venv` before `develop`, `test-rust`, `lint`).
# One cargo profile (release) for everything, so dependencies are built once.

PYTHON ?= python3.11
VENV := .venv
VENV_ABS := $(abspath $(VENV))
BIN := $(VENV)/bin
# Two stamps: the build needs only maturin (what `make demo` installs); the test toolchain comes with `make test`.
BUILD_STAMP := $(VENV)/.labelport-build
STAMP := $(VENV)/.labelport-tools
# maturin develop installs into the active virtualenv: activate it for every command that needs it.
ACTIVATE := VIRTUAL_ENV=$(VENV_ABS) PATH=$(VENV_ABS)/bin:$$PATH
BUILD_TOOLS := "maturin>=1.7,<2"
# What the tests need besides labelport itself (pytest, requests, httpx, orjson), the vendors' official SDKs
# (witnesses of the simulators' fidelity) and the optional extras (pandas, polars, pyarrow, tqdm, dlt, Airflow, ...).
TEST_REQUIREMENTS := $(wildcard tests/requirements.txt tests/requirements-extras.txt tests/requirements-distributed.txt tests/requirements-pipelines.txt tests/witness-requirements/*.txt)
# What `make docs` needs besides those (the notebooks run at build time with the test extras): mkdocs, Material,
# mkdocstrings' Python handler, mkdocs-jupyter. Its own stamp, so `make test` does not install them.
DOCS_REQUIREMENTS := tests/requirements-docs.txt
DOCS_STAMP := $(VENV)/.labelport-docs

.PHONY: help venv venv-build venv-docs develop demo test test-rust test-python docs docs-serve wheel bench bench-smoke reliability fuzz lint format clean distclean

help:
	@echo "make demo         set up, build, and run the demo against the local Alegion sandbox"
	@echo "make test         set up, build, and run every test (Rust, then Python)"
	@echo "make venv         create .venv with maturin and the test requirements (once; demo needs only maturin)"
	@echo "make develop      build the Rust core (release) into .venv"
	@echo "make test-rust    cargo test --release --no-default-features (no interpreter needed)"
	@echo "make test-python  build, then pytest against the sandbox"
	@echo "make docs         the documentation site into site/ (mkdocs, strict: a broken link or reference fails)"
	@echo "make docs-serve   the site at http://127.0.0.1:8000, rebuilt on every change"
	@echo "make wheel        the release wheel (abi3, manylinux2014 via zig, LTO) and the sdist into dist/"
	@echo "make bench        the benchmarks against the peers (BENCHMARKS.md); bench-smoke: seconds, checks they run"
	@echo "make reliability  the fault matrix, 10 seeds x 5,000 records per vendor (RELIABILITY.md)"
	@echo "make fuzz         each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (180) in turn (needs cargo-fuzz, nightly)"
	@echo "make lint         cargo fmt --check, clippy -D warnings, ruff check, ruff format --check"
	@echo "make format       cargo fmt, ruff format, ruff check --fix"
	@echo "make clean        remove build output and caches; distclean also removes .venv"

venv: $(STAMP)

venv-build: $(BUILD_STAMP)

$(BUILD_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(BUILD_TOOLS)
	touch $(BUILD_STAMP)

$(STAMP): $(BUILD_STAMP) $(TEST_REQUIREMENTS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(foreach r,$(TEST_REQUIREMENTS),-r $(r))
	touch $(STAMP)

venv-docs: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP) $(DOCS_REQUIREMENTS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(DOCS_REQUIREMENTS)
	touch $(DOCS_STAMP)

develop: venv-build
	$(ACTIVATE) $(BIN)/maturin develop --release

demo: develop
	$(BIN)/python -m labelport demo

test: develop venv
	$(ACTIVATE) cargo test --release --no-default-features
	$(ACTIVATE) $(BIN)/pytest

test-rust: venv-build
	$(ACTIVATE) cargo test --release --no-default-features

test-python: develop venv
	$(ACTIVATE) $(BIN)/pytest

# The site (mkdocs.yml): docs/, the README, the notebooks (run against the sandboxes while building), the API
# reference from the stubs and the built module's docstrings (hence `develop`), the CLI's --help.
docs: develop venv-docs
	$(ACTIVATE) NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: develop venv-docs
	$(ACTIVATE) NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# The release wheel: one abi3 wheel (CPython >= 3.10) for manylinux2014 (glibc 2.17), linked through zig
# (`ziglang` from PyPI) so it runs on old Linux distributions; the dist profile (LTO). Its own target directory,
# so zig's compiler settings do not invalidate the development build. Then the sdist.
wheel: venv-build
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "ziglang>=0.13,<0.14"
	$(ACTIVATE) CARGO_TARGET_DIR=target/wheel $(BIN)/maturin build --profile dist \
		--compatibility manylinux2014 --zig --out dist
	$(BIN)/maturin sdist --out dist

bench: develop venv
	$(BIN)/python bench/run.py

bench-smoke: develop venv
	$(BIN)/python bench/run.py --smoke

reliability: develop venv
	$(BIN)/python bench/reliability.py

# libFuzzer needs a nightly toolchain (cargo install cargo-fuzz); no sanitizer: the code is safe Rust, and a
# panic or an assertion is what the targets look for. New corpus entries go to fuzz/corpus/ (not committed).
FUZZ_SECONDS ?= 180
FUZZ_TARGETS := link_header page_number taskmonk_output sama_schema http_response
fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do mkdir -p corpus/$$t && \
		cargo +nightly fuzz run -s none -O $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) \
		-print_final_stats=1 || exit 1; done

lint: venv
	cargo fmt --check
	$(ACTIVATE) cargo clippy --release --all-targets -- -D warnings
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	cargo fmt
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	cargo clean
	rm -rf .pytest_cache dist site
	find python tests -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f python/labelport/*.so python/labelport/*.pyd

distclean: clean
	rm -rf $(VENV)
