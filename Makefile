# Two commands do all the set-up themselves: `make run` (the app) and `make test` (the tests).
# Each creates or reuses the virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.app-deps
TEST_STAMP := $(VENV)/.test-deps

.PHONY: run test setup bench clean

run: $(APP_STAMP)
	$(PY) app.py $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(APP_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(TEST_STAMP): requirements-test.txt $(APP_STAMP)
	$(PY) -m pip install -r requirements-test.txt
	touch $@

bench: $(TEST_STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) data/gradio-tmp .pytest_cache
