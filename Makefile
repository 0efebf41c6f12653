# PipeZone: `make demo` runs the demo flows on the embedded default; `make test` runs the tests.
# Each target installs what it needs on first use (venv, Python packages, Spark jars).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
JARS   := .pipezone/jars
PYTEST_ARGS ?=

.PHONY: help install jars demo test lint schema validate clean services-up services-down services-status airflow up down \
	bench bench-quick

help:
	@echo "make demo      build the demo SQLite shop and run its flows on the embedded default"
	@echo "make test      run the test suite (installs venv, packages and Spark jars on first use)"
	@echo "make lint      ruff"
	@echo "make schema    regenerate metadata/schemas/*.json from the spec models"
	@echo "make validate  pipezone validate on the repo's metadata"
	@echo "make services-up / services-down / services-status   the real stack on this machine (no Docker)"
	@echo "make up / down    the full stack in Docker (setup/docker): Airflow :8080, Spark :8090, MinIO :9001, Vault :8200"
	@echo "make airflow   airflow standalone with PipeZone's dags/ and plugins/ (UI on :8080)"
	@echo "make bench     ingest, incremental latency, DAG parse and memory benchmarks -> docs/benchmarks.md (~45 min)"
	@echo "make bench-quick   the same at 200k rows, under 10 minutes -> .pipezone/bench/quick.md"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "PipeZone needs Python 3.11 (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

jars: $(STAMP)
	$(PY) -m pipezone.core.spark.jars --cache $(JARS)

validate: $(STAMP)
	$(VENV)/bin/pipezone validate

schema: $(STAMP)
	$(VENV)/bin/pipezone schema

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: jars
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Airflow with PipeZone's dags/ and plugins/; its metadata database (SQLite) lives in .pipezone/airflow,
# shared by `make demo` (dag.test() runs) and `make airflow` (the UI shows the demo's runs).
AIRFLOW_HOME_DIR := $(CURDIR)/.pipezone/airflow
AIRFLOW_ENV := AIRFLOW_HOME=$(AIRFLOW_HOME_DIR) PIPEZONE_HOME=$(CURDIR) \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False PATH=$(CURDIR)/$(VENV)/bin:$$PATH
# How each Airflow task runs its step in the demo: in-process (one Spark session shared by all tasks of the
# dag.test() runs) or spark-submit (one JVM per task, as the scheduler runs them; ~15 s more per step).
DEMO_LAUNCHER ?= in-process

# The embedded demo, from scratch, through Airflow: build the shop, run every flow's DAG with dag.test(),
# change the shop, run the DAGs again, compare every layer with the source and the exported gold table
# (SQLite .pipezone/demo/bi.db) with the lake's.
demo: jars
	rm -rf .pipezone/lake .pipezone/state.db .pipezone/demo/bi.db
	$(PY) -m pipezone.core.demo.shop create .pipezone/demo/retail.db --force
	$(VENV)/bin/pipezone validate
	@mkdir -p $(AIRFLOW_HOME_DIR)
	@$(AIRFLOW_ENV) $(VENV)/bin/airflow db migrate >$(AIRFLOW_HOME_DIR)/db-migrate.log 2>&1 \
		|| { tail -n 20 $(AIRFLOW_HOME_DIR)/db-migrate.log; exit 1; }
	@echo "== run 1: full load (each flow's Airflow DAG, dag.test())"
	$(AIRFLOW_ENV) AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING PIPEZONE_SPARK_LAUNCHER=$(DEMO_LAUNCHER) \
		$(VENV)/bin/pipezone run --all --airflow
	@echo "== change batch 1: inserts and updates in the source"
	$(PY) -m pipezone.core.demo.shop change .pipezone/demo/retail.db --batch 1
	@echo "== run 2: incremental (extract reads only the changed rows and the lookback window)"
	$(AIRFLOW_ENV) AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING PIPEZONE_SPARK_LAUNCHER=$(DEMO_LAUNCHER) \
		$(VENV)/bin/pipezone run --all --airflow
	@echo "== layer row counts (silver must equal the source, each export its lake table)"
	$(VENV)/bin/pipezone tables --check
	@echo "== see these runs in the Airflow UI: make airflow"

# Airflow standalone (scheduler, dag-processor, api-server, triggerer) with PipeZone's DAGs and plugins.
airflow: jars
	@mkdir -p $(AIRFLOW_HOME_DIR)
	@echo "Airflow UI: http://localhost:8080  (user admin; password in $(AIRFLOW_HOME_DIR)/simple_auth_manager_passwords.json.generated)"
	$(AIRFLOW_ENV) $(VENV)/bin/airflow db migrate >/dev/null
	$(AIRFLOW_ENV) $(VENV)/bin/pipezone airflow-pool
	$(AIRFLOW_ENV) AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin $(VENV)/bin/airflow standalone

# The real stack on this machine, no Docker (setup/local/): MariaDB 127.0.0.1:3307, PostgreSQL :5433, FerretDB
# (MongoDB wire protocol) :27017, MinIO :9000 (console :9001), OpenBao (Vault API) :8200, Spark standalone
# spark://127.0.0.1:7077 (UI :8090). Servers are built or installed once per machine; data and logs live under
# .pipezone/services/. Use them with PIPEZONE_PROFILE=services.
services-up: $(STAMP) jars
	bash setup/local/chromium.sh install
	bash setup/local/mariadb.sh install
	bash setup/local/mariadb.sh start
	bash setup/local/postgres.sh install
	bash setup/local/postgres.sh start
	bash setup/local/ferretdb.sh install
	bash setup/local/ferretdb.sh start
	bash setup/local/minio.sh install
	bash setup/local/minio.sh start
	bash setup/local/vault.sh install
	bash setup/local/vault.sh start
	bash setup/local/spark.sh start
	bash setup/local/spark-connect.sh start
	@echo "services are up: export PIPEZONE_PROFILE=services; eval \"\$$(bash setup/local/vault.sh env)\""

services-down:
	-bash setup/local/spark-connect.sh stop
	-bash setup/local/spark.sh stop
	-bash setup/local/vault.sh stop
	-bash setup/local/minio.sh stop
	-bash setup/local/ferretdb.sh stop
	-bash setup/local/postgres.sh stop
	-bash setup/local/mariadb.sh stop

services-status:
	-@for s in mariadb postgres ferretdb minio vault spark spark-connect; do bash setup/local/$$s.sh status; done

# The full stack in Docker (setup/docker): Airflow 3.3, Spark standalone, MinIO, MySQL, Vault; ports on 127.0.0.1.
DOCKER_DIR := setup/docker
COMPOSE := docker compose --project-name pipezone --project-directory $(DOCKER_DIR) --env-file $(DOCKER_DIR)/.env \
	-f $(DOCKER_DIR)/docker-compose.infra.yml -f $(DOCKER_DIR)/docker-compose.spark.yml \
	-f $(DOCKER_DIR)/docker-compose.airflow.yml

$(DOCKER_DIR)/.env:
	$(PYTHON) $(DOCKER_DIR)/init_env.py $@

up: $(DOCKER_DIR)/.env
	$(COMPOSE) build
	$(COMPOSE) up --detach --wait --wait-timeout 600
	@echo "Airflow  http://localhost:8080  user admin, password: AIRFLOW_ADMIN_PASSWORD in $(DOCKER_DIR)/.env"
	@echo "Spark    http://localhost:8090   MinIO console http://localhost:9001   Vault http://localhost:8200"

down:
	docker compose --project-name pipezone down

clean:
	rm -rf .pipezone/lake .pipezone/state.db .pipezone/demo .pytest_cache

# Benchmarks (bench/): MariaDB (and MinIO for the full run) from setup/local, started and installed on first
# use; dag-factory in its own venv (it must not share this project's environment) for the parse comparison.
DAGFACTORY_VENV := .pipezone/bench/dagfactory-venv
DAGFACTORY_PY := $(DAGFACTORY_VENV)/bin/python

$(DAGFACTORY_PY):
	$(PYTHON) -m venv $(DAGFACTORY_VENV)
	$(DAGFACTORY_VENV)/bin/pip install --quiet -c constraints.txt dag-factory==1.1.0 apache-airflow==3.3.2

bench: jars $(DAGFACTORY_PY)
	$(PY) bench/run.py --dag-factory-python $(DAGFACTORY_PY) --docs docs/benchmarks.md

bench-quick: jars $(DAGFACTORY_PY)
	$(PY) bench/run.py --quick --dag-factory-python $(DAGFACTORY_PY)
