# Two commands for a new user (see README):
#   make book   set up a local venv and build the book (every notebook executed; tiny profile)
#   make test   set up a local venv and run every test: unit tests, nbval over the notebooks,
#               and the browser test of the built site (skipped, with its reason, until
#               `make book` has built _build/html and chromium is installed)
# For development: `make test-fast` (unit tests without the slow ones) and `make lint` (ruff).
# The notebooks read ECGSSL_PROFILE / ECGSSL_RUNS / ECGSSL_DATA / ECGSSL_DEVICE, e.g.
#   ECGSSL_PROFILE=paper ECGSSL_RUNS=/scratch/runs make book   (shows a finished paper run)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# notebooks run in notebooks/: make sure they import this working tree's library even if the
# venv's editable install is stale
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: book test test-fast lint format venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this exact version is the CPU wheel (see TOOLCHAIN notes in README)
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

# clean first: the execution cache keys on notebook code only, not on ecgssl_nb
book: $(STAMP)
	$(VENV)/bin/jupyter-book clean . --all
	$(VENV)/bin/jupyter-book build . -W --keep-going

test: $(STAMP)
	$(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=3600 tests notebooks

# the developer loop: unit tests without the `slow` ones, no notebooks, no browser test of the
# site, spread over the cores by pytest-xdist with one torch thread per worker (measured 94 s
# on a 2-core machine, against 168 s in one process); `make test` still runs everything
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n auto -m "not slow" --ignore tests/test_book_site.py tests

# ruff: the rules in pyproject.toml [tool.ruff.lint] and the formatter's layout; CI runs it
# before the tests (`make format` rewrites the tree in place)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) benchmarks/bench_prepare.py

clean:
	rm -rf _build
