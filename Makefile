# Two commands for a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR ?= data/demo
# one BERT, sized to train in about a minute and a half on 2 cores, reads tokens in one run and the
# log-mel frames they come from in the other: same size, epochs, learning rate and seed
DEMO_BERT ?= --hidden-size 64 --num-layers 2 --num-heads 2

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
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok train --model bert --k 64 $(DEMO_BERT) --overwrite
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok eval --run bert-logmel-k64
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok train --model bert --input frames $(DEMO_BERT) --overwrite
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok eval --run bert-logmel
	AUDIOTOK_DATA_DIR=$(DEMO_DIR) $(BIN)/audiotok runs --plot $(DEMO_DIR)/runs.png
	@echo "A matched pair: the same BERT ($(DEMO_BERT)), epochs, learning rate and seed read the"
	@echo "k=64 tokens (bert-logmel-k64) and the log-mel frames they come from (bert-logmel)."
	@echo "One seed on synthetic tones: add --seeds 3 to both for a spread; real recordings in docs/results.md."
	@echo "The demo's store, runs and runs.png are in $(DEMO_DIR). To look further:"
	@echo "  . $(BIN)/activate && export AUDIOTOK_DATA_DIR=$(DEMO_DIR) && audiotok runs"

test: $(INSTALLED)
	$(BIN)/pytest -q

lint: $(INSTALLED)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR)
