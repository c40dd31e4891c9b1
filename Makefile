# `make demo` trains and demonstrates SOG on the bundled corpus; `make test` runs the tests.
# Both create the virtual environment on first use. TORCH pins the CPU build of torch that pip finds
# on this project's machines; set TORCH=torch (or any spec) elsewhere.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test demo benchmark clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) demo.py

clean:
	rm -rf $(VENV) outputs
