# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= serve,ml,dev
PYTEST_ARGS ?=

.PHONY: venv demo test lint typecheck up down triton export clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	# torch comes from the pinned CPU wheel; the lock pins every transitive dependency.
	$(BIN)/pip install -q -c requirements.lock -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: venv
	$(BIN)/python deploy/stack.py demo

up: venv
	$(BIN)/python deploy/stack.py up

down:
	$(BIN)/python deploy/stack.py down

# A real Triton on CPU (nvidia-pytriton's tritonserver in .venv-triton) serving the bundled models
# on 127.0.0.1:8100 (HTTP) / 8101 (gRPC) / 8102 (metrics), in the foreground.
triton: venv
	$(BIN)/python -m inference.local_triton install
	$(BIN)/python -m inference.local_triton serve --repository deploy/triton/model_repository --config-name cpu

# Rebuild deploy/triton/model_repository from the checkpoints in ecg_models/weights.
export: venv
	$(BIN)/python -m inference.export

test: venv
	$(BIN)/pytest -m "not gpu" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# Layers and no import cycles: contracts in pyproject.toml [tool.importlinter] (docs/architecture.md §5).
	$(BIN)/lint-imports

typecheck: venv
	SECRET_KEY=typecheck-only $(BIN)/mypy cds inference

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
