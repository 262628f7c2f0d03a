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

.PHONY: setup setup-jax run test test-jax lint

# The package with TensorFlow and the test tools (pytest, scipy, ruff, and torch for the
# parity tests).
setup: $(VENV)/.installed

run: setup
	$(BIN)/python -m tf_resnet9.train $(if $(DATA_DIR),--data_dir $(DATA_DIR)) $(RUN_FLAGS)

test: setup
	$(BIN)/python -m pytest

# Keras on JAX, without TensorFlow, in $(JAX_VENV). Train there with
#   KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m tf_resnet9.train
setup-jax: $(JAX_VENV)/.installed

# The same tests on Keras' JAX backend with TensorFlow absent (tf.data tests deselected).
test-jax: $(JAX_VENV)/.installed
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m pytest -m "not tensorflow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt -e '.[test]' ruff==0.17.6
	touch $@

$(JAX_VENV)/.installed: requirements-jax.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/pip install --upgrade pip
	$(JAX_VENV)/bin/pip install -r requirements-jax.txt "$(JAX)==0.10.2" -e . pytest scipy
	touch $@
