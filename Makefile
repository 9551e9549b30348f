# The two commands a new user runs (README "The two commands"): `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint typecheck check bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m jobs.supervisor

test: $(VENV)/.dev
	$(PY) -m pytest -n 2 --dist loadfile  # two sessions, one per core; a file stays in one
	$(PY) -m tests.clock_proof  # the `clock` tests again at each awkward instant

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy monitoring_core jobs app.py pages bench

check: lint typecheck test

bench: $(VENV)/.dev
	$(PY) bench/ingest.py
	$(PY) bench/queries.py

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
