# Two commands on a fresh machine (README.org):  `make run` (set up .venv, then train)  and
# `.venv/bin/python -m pytest` (the tests; `make test` is the same).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CIFAR-10 location, passed as --data_dir (unset: the Keras cache, else tensorflow-datasets).
DATA_DIR ?=
# The full recipe needs a GPU (hours on a CPU): without one, `make run` trains a narrow
# ResNet9 on part of the data for two epochs instead. Override with RUN_FLAGS=...
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
RUN_FLAGS ?= $(if $(HAVE_GPU),--epochs 24,--width 0.25 --epochs 2 --train_limit 4096)

JAX_VENV ?= .venv-jax
# JAX's build: "jax" for the CPU; "jax[cuda12]" (or "jax[cuda13]") for an NVIDIA GPU.
JAX ?= jax

# The GPU machine's libraries (requirements-gpu-stack.txt: Python 3.12, JAX 0.11.2, NumPy
# 2.5.2, no TensorFlow) on this CPU: the JAX suite, slow tests included, as the GPU machine
# would run it.
GPU_STACK_VENV ?= .venv-gpu-stack
PYTHON312 ?= $(or $(lastword $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12)),python3.12)

.PHONY: setup setup-jax setup-gpu-stack run test test-slow test-jax test-gpu-stack lint

# The package with TensorFlow and the test tools (pytest, scipy, ruff, and torch for the
# parity tests).
setup: $(VENV)/.installed

run: setup
	$(BIN)/python -m tf_resnet9.train $(if $(DATA_DIR),--data_dir $(DATA_DIR)) $(RUN_FLAGS)

test: setup
	$(BIN)/python -m pytest

# The slow tests (the `slow` marker: whole runs of the commands and benchmarks), which the
# default run leaves out; CI runs them too.
test-slow: setup
	$(BIN)/python -m pytest -m slow

# Keras on JAX, without TensorFlow, in $(JAX_VENV). Train there with
#   KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m tf_resnet9.train
setup-jax: $(JAX_VENV)/.installed

# The same tests on Keras' JAX backend with TensorFlow absent (tf.data tests deselected);
# CI adds the slow ones about JAX alone: JAX_MARKS='not tensorflow and (not slow or jax)'.
JAX_MARKS ?= not tensorflow and not slow
test-jax: $(JAX_VENV)/.installed
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m pytest -m "$(JAX_MARKS)"

test-gpu-stack: $(GPU_STACK_VENV)/.installed
	KERAS_BACKEND=jax $(GPU_STACK_VENV)/bin/python -m pytest -m "not tensorflow"

setup-gpu-stack: $(GPU_STACK_VENV)/.installed

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt -e '.[test,sweep]' ruff==0.17.6
	touch $@

$(JAX_VENV)/.installed: requirements-jax.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/pip install --upgrade pip
	$(JAX_VENV)/bin/pip install -r requirements-jax.txt "$(JAX)==0.10.2" -e . pytest scipy
	touch $@

$(GPU_STACK_VENV)/.installed: requirements-gpu-stack.txt setup.cfg pyproject.toml
	$(PYTHON312) -m venv $(GPU_STACK_VENV)
	$(GPU_STACK_VENV)/bin/pip install --upgrade pip
	$(GPU_STACK_VENV)/bin/pip install -r requirements-gpu-stack.txt
	$(GPU_STACK_VENV)/bin/pip install --no-deps -e .
	$(GPU_STACK_VENV)/bin/pip check
	touch $@
