# make test / make demo create the virtualenv on first use.
# PYTHON picks the interpreter (e.g. PYTHON=python3.13 VENV=.venv-3.13).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Extra requirements for the test venv, e.g. PIP_PINS="'rq<3'" for the LTS leg.
PIP_PINS ?=

.PHONY: test lint typecheck demo bench bench-smoke chaos install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' $(PIP_PINS)
	touch $@

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

typecheck: install
	$(PY) -m mypy

demo: install
	$(PY) manage.py envoy_demo $(DEMO_ARGS)

# Need PostgreSQL and Redis: DATABASE_URL and REDIS_URL, as CI sets them.
bench: install
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/run.py $(BENCH_ARGS)

# Every bench phase at a tiny size (CI runs it so the benchmark cannot rot).
bench-smoke: install
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/run.py --smoke $(BENCH_ARGS)

chaos: install
	$(PY) chaos/run.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
