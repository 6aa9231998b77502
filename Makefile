# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench bench-quick clean

$(VENV)/.python-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kamflow needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.installed: $(VENV)/.python-ok pyproject.toml
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.python-ok pyproject.toml
	$(PIP) install -e '.[test]'
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/kamflow demo

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check kamflow tests cli.py bench
	$(VENV)/bin/mypy kamflow tests

bench: $(VENV)/.installed-test
	$(PY) bench/bench_transitions.py
	$(PY) bench/bench_steps.py

bench-quick: $(VENV)/.installed-test
	$(PY) bench/bench_transitions.py --quick
	$(PY) bench/bench_steps.py --quick

clean:
	rm -rf $(VENV) kamflow-demo.db* kamflow-report.html kamflow-demo-accounts.csv \
	  kamflow-demo-plan.html kamflow-demo.ics outbox .pytest_cache .mypy_cache .ruff_cache
