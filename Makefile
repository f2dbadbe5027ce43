# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv when it is
# missing or older than pyproject.toml, so nothing has to be installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The benchmarks' baselines (pandas) too: installed by `make bench` only, so that tests run
# with the runtime dependencies and what the tests need, no more.
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(VENV)/bin/convirza-import demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check importer tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(BENCH_STAMP)
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache demo.ledger.sqlite*
