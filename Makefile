# The two commands of the README's quick start; each sets up what it needs first (safe to rerun).
#   make train   set up, then train and test the main job (Fashion-MNIST convnet) in runs/
#   make test    set up with the test extra, then run the test suite but the long end-to-end
#                runs marked slow (the everyday check, about 20 minutes on 2 cores)
#   make test-slow  the slow runs alone (CI runs both: .ci/run)
#   make bench   set up, then print the train-step throughput of the main job's model
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/fashion_mnist
PYTEST_ARGS ?=

.PHONY: train test test-slow bench

train:
	VENV=$(VENV) scripts/setup.sh
	$(PY) launch.py --config configs/fashion_mnist.py --workdir $(WORKDIR)

test:
	VENV=$(VENV) scripts/setup.sh test
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

test-slow:
	VENV=$(VENV) scripts/setup.sh test
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench:
	VENV=$(VENV) scripts/setup.sh
	$(PY) benchmarks/train_step_throughput.py
