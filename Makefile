# The two commands of the README:
#   make demo   set up (local virtualenv .venv) and run the simulated-study demo
#   make test   set up and run the test suite
# torch: this machine has a local CPU wheel for torch==2.13.0; on a GPU box the same pin pulls
# the CUDA build from PyPI. Override with e.g. `make demo TORCH="torch==2.13.0 --index-url ...".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH) 2>&1 | grep -v "is ignored: it is neither" || true
	$(PIP) install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch, mne, mne_bids, transformers, braindecode_speech"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/braindecode-speech demo --out outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) outputs
