# `make demo` trains and demonstrates SOG on the bundled corpus; `make test` runs the tests.
# Both create the virtual environment on first use. TORCH pins the CPU build of torch that pip finds
# on this project's machines; set TORCH=torch (or any spec) elsewhere.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# The oldest Python setup.cfg allows; `make check-py310` runs what needs no torch (input processing, builders) on it.
# (pyenv's own interpreter first: its python3.10 shim refuses to run unless 3.10 is a selected version.)
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10))
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install test demo check-py310 clean

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

check-py310:
	@test -n "$(PY310)" || { echo "check-py310: no Python 3.10 found (pyenv install 3.10, or make PY310=/path/to/python3.10)"; exit 1; }
	$(PY310) -m venv .venv310
	.venv310/bin/python -m pip install -q --upgrade pip
	.venv310/bin/python -m pip install -q "datasets>=5,<6" pyarrow lz4 pytest
	.venv310/bin/python -m compileall -q -x '/\.venv' .
	.venv310/bin/python -m pytest -q --noconftest -p no:cacheprovider tests/test_data_builders.py

clean:
	rm -rf $(VENV) .venv310 outputs
