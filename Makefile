# Soundstage developer commands. `make run` and `make test` set everything up on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned on the same pip command line as everything that depends on it, so pip
# keeps this build (the local CPU wheel here, a CUDA build elsewhere) and never pulls another.
TORCH_VERSION ?= 2.13.0
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q
PACKAGES := -e shared -e services/api -e services/worker-musicgen -e services/worker-demucs -e services/worker-pipeline -e services/worker-magenta
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
export PYTHONUNBUFFERED := 1

.PHONY: help install install-dev run migrate models test test-unit lint format load fuzz chaos bench-api bench-musicgen bench-demucs bench-magenta bench-jam bench-soundtrack clean

help:
	@echo "make run        start the whole stack in embedded mode on http://127.0.0.1:8000 (PORT=...)"
	@echo "make test       run the whole test suite (installs what it needs first)"
	@echo "make migrate    apply database migrations to DATABASE_URL"
	@echo "make models     download/build every served MusicGen and Demucs model into the model cache (warm-up)"
	@echo "make lint       ruff + mypy"
	@echo "make bench-api  submission latency benchmark against real Redis + PostgreSQL"
	@echo "make load       1,000 concurrent submissions from 50 clients: 0 lost, 0 duplicated, p50/p99"
	@echo "make fuzz       Schemathesis over the whole API, with and without a key: 0 server errors, 0 mismatches"
	@echo "make chaos      kill workers, Ctrl-C the embedded stack, crash Redis, stop PostgreSQL: nothing stuck or lost"
	@echo "make bench-musicgen  MusicGen decoding speed (random:small): the engine against plain generate"
	@echo "make bench-demucs    Demucs separation speed and memory (random:htdemucs): the engine against apply_model"
	@echo "make bench-magenta   Magenta RT speed (random:tiny): the engine against magenta-rt's generate, first audio, loop priming"
	@echo "make bench-jam       jams (random:tiny): first chunk, realtime pacing, sessions one worker keeps in real time"
	@echo "make bench-soundtrack  a 6-scene 40 s soundtrack (random:small) against one /generate of 40 s"

# The runtime (what `make run` needs) and the test/lint tools are installed separately,
# so a plain `make run` does not pull moto, mypy and friends.
$(STAMP): shared/pyproject.toml services/api/pyproject.toml services/worker-musicgen/pyproject.toml services/worker-demucs/pyproject.toml services/worker-pipeline/pyproject.toml services/worker-magenta/pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Soundstage into $(VENV) (torch $(TORCH_VERSION); the first time takes a few minutes)"
	$(PIP_INSTALL) -c constraints.txt torch==$(TORCH_VERSION) $(PACKAGES)
	@touch $@

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP_INSTALL) -c constraints.txt torch==$(TORCH_VERSION) $(PACKAGES) -r requirements-dev.txt
	@touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: install
	@scripts/ensure-rubberband.sh
	$(BIN)/soundstage run

migrate: install
	$(BIN)/soundstage migrate

models: install
	$(BIN)/soundstage-musicgen-models
	$(BIN)/soundstage-demucs-models
	$(BIN)/soundstage-magenta-models

test: install-dev
	@scripts/ensure-test-servers.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install-dev
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-api: install-dev
	@scripts/ensure-test-servers.sh
	$(BIN)/python -m bench.bench_api $(BENCH_ARGS)

# 1,000 concurrent submissions from 50 clients in services mode: 0 lost, 0 duplicated, p50/p99 (docs/RELIABILITY.md).
load: install-dev
	@scripts/ensure-test-servers.sh
	$(BIN)/python -m bench.bench_api --requests 1000 --concurrency 50 $(BENCH_ARGS)

# Schemathesis is installed here, not with the test tools: it pulls its own hypothesis.
fuzz: install-dev
	@scripts/ensure-test-servers.sh
	$(PIP_INSTALL) -c constraints.txt torch==$(TORCH_VERSION) "schemathesis==4.32.5"
	$(BIN)/python -m bench.fuzz $(FUZZ_ARGS)

# CHAOS_ARGS names scenarios to run only those: sigkill ctrl-c redis postgres.
chaos: install-dev
	@scripts/ensure-test-servers.sh
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

bench-musicgen: install-dev
	$(BIN)/python -m bench.bench_musicgen $(BENCH_ARGS)

bench-demucs: install-dev
	$(BIN)/python -m bench.bench_demucs $(BENCH_ARGS)

bench-magenta: install-dev
	$(BIN)/python -m bench.bench_magenta $(BENCH_ARGS)

bench-jam: install-dev
	@scripts/ensure-test-servers.sh
	$(BIN)/python -m bench.bench_jam $(BENCH_ARGS)

bench-soundtrack: install-dev
	@scripts/ensure-test-servers.sh
	$(BIN)/python -m bench.bench_soundtrack $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
