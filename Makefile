# Two commands on a fresh machine: `make train` and `make test`. The first use creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test test-full lint bench clean peers-env peers

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded default data: FroSSL on scikit-learn's digits, small CNN, CPU, < 3 minutes.
train: $(STAMP)
	$(BIN)/python -m frossl_lit.train $(ARGS)

## The test suite without the tests marked slow, one pytest worker per core (pytest-xdist; each worker runs torch
## on one thread): 3.4–3.9 minutes on 2 cores (1057 tests, AMD EPYC, 2026-12-04). PYTEST_WORKERS=0 runs in one process.
## test-full adds the slow ones, in one process with every core (long trainings, DDP hangs and kills, whose timing
## one thread would stretch).
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-full: test
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests experiments

## The peer benchmark's own environment (experiments/peers/.venv: lightly, stable-pretraining, this project),
## then the benchmark itself (experiments/results/peers.md; CIFAR-10 in data/cifar10, see experiments/peers/bench.py).
PEERS_VENV := experiments/peers/.venv
$(PEERS_VENV)/.installed: experiments/peers/requirements.txt pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -r experiments/peers/requirements.txt
	touch $@

peers-env: $(PEERS_VENV)/.installed

peers: peers-env
	flock /tmp/frossl_heavy.lock $(PEERS_VENV)/bin/python -m experiments.peers.bench $(ARGS)

clean:
	rm -rf outputs .pytest_cache
