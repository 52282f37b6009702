# Two commands for a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR ?= data/demo
DEMO_MODEL ?= lstm
# the spectrogram side of the comparison, sized to train in about a minute on 2 cores
DEMO_SPECTROGRAM ?= cnn --cnn-channels 16,32,64 --epochs 8 --lr 3e-3

.PHONY: install demo test lint clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(INSTALLED)

# A fresh demo mirror and store each time; runs you trained in $(DEMO_DIR)/runs stay (the demo's own
# two are trained again with --overwrite).
demo: $(INSTALLED)
	rm -rf $(DEMO_DIR)/mirror $(DEMO_DIR)/audio $(DEMO_DIR)/audiotok.zarr
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok demo-data
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok expand
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok split --val-ratio 0.1
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok featurize
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok vocab --k 64
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok tokenize --k 64
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok train --model $(DEMO_MODEL) --k 64 --overwrite
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok eval --run $(DEMO_MODEL)-logmel-k64
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok train --model $(DEMO_SPECTROGRAM) --overwrite
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok eval --run cnn-logmel
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok runs --plot $(DEMO_DIR)/runs.png
	@echo "The demo's store, runs and runs.png are in $(DEMO_DIR). To look further:"
	@echo "  . $(BIN)/activate && export AUDIOTOK_DATA_DIR=$(DEMO_DIR) && audiotok runs"

test: $(INSTALLED)
	$(BIN)/pytest -q

lint: $(INSTALLED)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR)
