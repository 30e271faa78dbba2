# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv from the project's own files on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet -e ".[test,serve,onnx,docs,tune,tracking]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vlsm demo

test: $(STAMP)
	$(BIN)/ruff check src tests experiments
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/ruff check src tests experiments
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests experiments

clean:
	rm -rf $(VENV) demo-output .pytest_cache
