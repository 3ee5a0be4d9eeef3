# Two commands for a new user (see README):
#   make book   set up a local venv and build the book on the tiny profile
#   make test   set up a local venv and run the tests (unit tests + nbval over the notebooks)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this exact version is the CPU wheel (see TOOLCHAIN notes in README)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book clean . --all
	$(VENV)/bin/jupyter-book build . -W --keep-going

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_prepare.py

clean:
	rm -rf _build
