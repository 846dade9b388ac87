# `make run` and `make test` each set up their own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup run lint test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	@# a venv made before the mujoco pin holds mujoco 4's split packages: remove them so that 3.17 installs cleanly
	$(PIP) uninstall -q -y mujoco-core mujoco-studio 2>/dev/null || true
	$(PIP) install -q -c constraints.txt -e ".[test,dmc,tune]"
	touch $@

## Train on the default config (HalfCheetah, paper settings). Extra overrides: make run ARGS="env=Hopper seed=1"
run: setup
	$(BIN)/sac-run $(ARGS)

# Two pytest workers: the learning tests run one torch thread each, so two of them fill the two cores. Tests are
# handed out one by one (--maxschedchunk 1) in the order conftest.py sets (the minutes-long learning runs first),
# so that neither worker is left with a queue of them at the end.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxschedchunk 1

## Lint (ruff: style, import order, complexity <= 15) and the layers (import-linter: README, Architecture).
lint: setup
	$(BIN)/ruff check sac_runner tests benchmarks
	$(BIN)/lint-imports

## The whole test suite (learning tests included; about 20 minutes on 2 CPU cores: 414 tests in 16:52 on an AVX-512 EPYC, 381 in 18:12 on an AVX2 one), after lint.
test: lint
	$(PYTEST) $(ARGS)

## The quick subset (about 4 minutes), after lint.
test-fast: lint
	$(PYTEST) -m "not slow" $(ARGS)

## Throughput against Stable-Baselines3 on the same machine.
bench: setup
	$(PIP) install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
