# PipeZone: `make demo` runs the demo flows on the embedded default; `make test` runs the tests.
# Each target installs what it needs on first use (venv, Python packages, Spark jars).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
JARS   := .pipezone/jars
PYTEST_ARGS ?=

.PHONY: help install jars demo test lint schema validate clean services-up services-down airflow

help:
	@echo "make demo      build the demo SQLite shop and run its flows on the embedded default"
	@echo "make test      run the test suite (installs venv, packages and Spark jars on first use)"
	@echo "make lint      ruff"
	@echo "make schema    regenerate metadata/schemas/*.json from the spec models"
	@echo "make validate  pipezone validate on the repo's metadata"
	@echo "make services-up / services-down   local MariaDB for the integration tests"
	@echo "make airflow   airflow standalone with PipeZone's dags/ and plugins/ (UI on :8080)"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "PipeZone needs Python 3.11 (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

jars: $(STAMP)
	$(PY) -m pipezone.core.spark_jars --cache $(JARS)

validate: $(STAMP)
	$(VENV)/bin/pipezone validate

schema: $(STAMP)
	$(VENV)/bin/pipezone schema

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: jars
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The embedded demo, from scratch: build the shop, run every flow, change the shop, run again, compare.
demo: jars
	rm -rf .pipezone/lake .pipezone/state.db
	$(PY) -m pipezone.core.demo_source create .pipezone/demo/retail.db --force
	$(VENV)/bin/pipezone validate
	@echo "== run 1: full load"
	$(VENV)/bin/pipezone run --all --in-process
	@echo "== change batch 1: inserts and updates in the source"
	$(PY) -m pipezone.core.demo_source change .pipezone/demo/retail.db --batch 1
	@echo "== run 2: incremental (extract reads only the changed rows and the lookback window)"
	$(VENV)/bin/pipezone run --all --in-process
	@echo "== layer row counts (silver must equal the source)"
	$(VENV)/bin/pipezone tables --check

# Airflow with PipeZone's DAGs and plugins (scheduler, dag-processor, api-server, triggerer).
AIRFLOW_HOME_DIR := $(CURDIR)/.pipezone/airflow
airflow: jars
	@mkdir -p $(AIRFLOW_HOME_DIR)
	@echo "Airflow UI: http://localhost:8080  (user admin; password in $(AIRFLOW_HOME_DIR)/simple_auth_manager_passwords.json.generated)"
	AIRFLOW_HOME=$(AIRFLOW_HOME_DIR) PIPEZONE_HOME=$(CURDIR) \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/airflow standalone

# Local real servers (no Docker): MariaDB on 127.0.0.1:3307, data under .pipezone/services/.
services-up:
	bash setup/local/mariadb.sh install
	bash setup/local/mariadb.sh start

services-down:
	bash setup/local/mariadb.sh stop

clean:
	rm -rf .pipezone/lake .pipezone/state.db .pipezone/demo .pytest_cache
