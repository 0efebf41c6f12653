#!/usr/bin/env bash
# A Spark standalone cluster (one master, one worker) for the tests, run from pyspark's own launcher
# (the venv's pyspark package is SPARK_HOME: no Spark download, no Docker, no system service).
#
#   bash setup/local/spark.sh install   # checks java and the venv's pyspark (the venv comes from `make install`)
#   bash setup/local/spark.sh start     # master + worker; waits for the worker to be ALIVE; no-op if running
#   bash setup/local/spark.sh stop      # worker, then master (TERM, then KILL after PIPEZONE_SPARK_WAIT)
#   bash setup/local/spark.sh status    # exit 0 when the master answers with an alive worker
#   bash setup/local/spark.sh apps      # the master's applications (running and completed): id, state, name
#
# Env: PIPEZONE_SPARK_MASTER_PORT (7077), PIPEZONE_SPARK_MASTER_UI_PORT (8090), PIPEZONE_SPARK_WORKER_UI_PORT
# (8091), PIPEZONE_SPARK_WORKER_CORES (4), PIPEZONE_SPARK_WORKER_MEMORY (4g), PIPEZONE_SPARK_WAIT (60),
# PIPEZONE_PYTHON (.venv/bin/python: pyspark's home, and the Python the executors run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HOST=127.0.0.1
MASTER_PORT="${PIPEZONE_SPARK_MASTER_PORT:-7077}"
MASTER_UI_PORT="${PIPEZONE_SPARK_MASTER_UI_PORT:-8090}"  # Spark's default 8080 is Airflow's
WORKER_UI_PORT="${PIPEZONE_SPARK_WORKER_UI_PORT:-8091}"
WORKER_CORES="${PIPEZONE_SPARK_WORKER_CORES:-4}"  # twice a 2-core machine: the Connect server holds 2
WORKER_MEMORY="${PIPEZONE_SPARK_WORKER_MEMORY:-4g}"
WAIT_SECONDS="${PIPEZONE_SPARK_WAIT:-60}"
PYTHON="${PIPEZONE_PYTHON:-$ROOT/.venv/bin/python}"

BASE="$ROOT/.pipezone/services/spark"
MASTER_LOG="$BASE/master.log"
WORKER_LOG="$BASE/worker.log"
MASTER_PID_FILE="$BASE/master.pid"
WORKER_PID_FILE="$BASE/worker.pid"
STATE_FILE="$BASE/cluster.env"  # the ports of the running cluster, for status/apps after an env change
WORK_DIR="$BASE/work"    # SPARK_WORKER_DIR: one folder per application (executor logs, fetched jars)
LOCAL_DIR="$BASE/local"  # SPARK_LOCAL_DIRS: shuffle and spill files
CONF_DIR="$BASE/conf"    # SPARK_CONF_DIR, kept empty: no stray spark-env.sh / spark-defaults.conf

NAME=spark
LOGS=("$MASTER_LOG" "$WORKER_LOG")
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

# --------------------------------------------------------------------------- python / pyspark

# An absolute path for the interpreter, symlinks kept (a venv's python must stay inside the venv).
absolute_python() {
    local py=$PYTHON
    if [[ $py != */* ]]; then
        py=$(command -v "$py" 2>/dev/null) || return 1
    fi
    [[ $py == /* ]] || py="$PWD/$py"
    [[ -x $py && ! -d $py ]] || return 1
    echo "$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
}

require_python() {
    PYTHON=$(absolute_python) || die "no Python at '$PYTHON': run 'make install' (or set PIPEZONE_PYTHON)"
    SPARK_HOME=$("$PYTHON" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))' 2>/dev/null) \
        || die "pyspark is not importable with $PYTHON: run 'make install'"
    [[ -x "$SPARK_HOME/bin/spark-class" ]] || die "$SPARK_HOME/bin/spark-class is missing (pyspark incomplete?): run 'make install'"
}

require_java() {
    if [[ -n ${JAVA_HOME:-} && -x "$JAVA_HOME/bin/java" ]]; then
        return 0
    fi
    command -v java >/dev/null 2>&1 || die "java is not installed (Spark needs Java 17 or 21; e.g. apt-get install openjdk-17-jre-headless)"
}

java_version() {
    local java=java
    [[ -n ${JAVA_HOME:-} && -x "$JAVA_HOME/bin/java" ]] && java="$JAVA_HOME/bin/java"
    "$java" -version 2>&1 | head -n1
}

# The master's /json/ page, reduced by a small Python program; `what` is one of:
#   alive   -> exit 0 when the master is ALIVE with at least one ALIVE worker
#   summary -> one line: master URL, alive workers, cores, memory
#   apps    -> the applications, running then completed
master_json() {
    local what=$1
    "$PYTHON" - "http://$HOST:$MASTER_UI_PORT/json/" "$what" 2>/dev/null <<'PY'
import json, sys, urllib.request
from datetime import datetime, timezone

url, what = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        m = json.load(response)
except Exception:
    sys.exit(1)
alive = int(m.get("aliveworkers", 0))
if what == "alive":
    sys.exit(0 if m.get("status") == "ALIVE" and alive >= 1 else 1)
if what == "summary":
    print(f"{m.get('url')}: {m.get('status')}, {alive} alive worker(s), "
          f"{m.get('coresused', 0)}/{m.get('cores', 0)} cores and "
          f"{m.get('memoryused', 0)}/{m.get('memory', 0)} MB in use")
    sys.exit(0)
if what == "apps":
    def started(app):
        ms = app.get("starttime") or 0
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else "-"
    active, completed = m.get("activeapps", []), m.get("completedapps", [])
    print(f"{len(active)} active, {len(completed)} completed application(s) on {m.get('url')}")
    rows = [(a.get("id", "?"), a.get("state", "?"), started(a), f"{(a.get('duration') or 0) / 1000:.1f}s",
             a.get("name", "")) for a in sorted(active, key=lambda a: a.get("starttime", 0))]
    rows += [(a.get("id", "?"), a.get("state", "?"), started(a), f"{(a.get('duration') or 0) / 1000:.1f}s",
              a.get("name", "")) for a in sorted(completed, key=lambda a: a.get("starttime", 0))]
    if rows:
        header = ("ID", "STATE", "STARTED", "DURATION", "NAME")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
        for r in [header, *rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) + "  " + str(r[4]))
    sys.exit(0)
sys.exit(2)
PY
}

# --------------------------------------------------------------------------- install

cmd_install() {
    require_java
    require_python
    local version
    version=$("$PYTHON" -c 'import pyspark; print(pyspark.__version__)')
    say "java: $(java_version)"
    say "pyspark $version at $SPARK_HOME ($PYTHON)"
}

# --------------------------------------------------------------------------- helpers

master_pid() { pid_in "$MASTER_PID_FILE" deploy.master.Master; }
worker_pid() { pid_in "$WORKER_PID_FILE" deploy.worker.Worker; }

# A running cluster keeps the ports it was started with, whatever the environment says now.
load_state() {
    [[ -f "$STATE_FILE" ]] && master_pid >/dev/null || return 0
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
            MASTER_PORT | MASTER_UI_PORT | WORKER_UI_PORT) [[ $value =~ ^[0-9]+$ ]] && printf -v "$key" '%s' "$value" ;;
        esac
    done <"$STATE_FILE"
}

save_state() {
    printf 'MASTER_PORT=%s\nMASTER_UI_PORT=%s\nWORKER_UI_PORT=%s\n' \
        "$MASTER_PORT" "$MASTER_UI_PORT" "$WORKER_UI_PORT" >"$STATE_FILE"
}

master_url() { echo "spark://$HOST:$MASTER_PORT"; }

answers() { master_json alive; }

addresses() {
    say "master     $(master_url)"
    say "master UI  http://$HOST:$MASTER_UI_PORT/ (JSON: http://$HOST:$MASTER_UI_PORT/json/)"
    say "worker UI  http://$HOST:$WORKER_UI_PORT/"
    say "executors run $PYTHON (PYSPARK_PYTHON of the worker)"
}

# Environment of both daemons (and so of the executors the worker starts).
daemon_env() {
    export SPARK_HOME
    export SPARK_CONF_DIR="$CONF_DIR"
    export SPARK_LOCAL_IP="$HOST"
    export SPARK_LOCAL_HOSTNAME="$HOST"
    export SPARK_PUBLIC_DNS="$HOST"
    export SPARK_WORKER_DIR="$WORK_DIR"
    export SPARK_LOCAL_DIRS="$LOCAL_DIR"
    # Executors run Python UDFs / RDD code with the driver's PYSPARK_PYTHON when it sets one, else with
    # `python3` from the executor's PATH: both lead to the venv here.
    export PYSPARK_PYTHON="$PYTHON"
    PATH="$(dirname "$PYTHON"):$PATH"
    export PATH
    # Fail on a taken port instead of silently moving to the next one; keep finished apps listed;
    # finished applications' folders (executor logs, copies of the jars) go after an hour.
    export SPARK_MASTER_OPTS="-Dspark.port.maxRetries=0 -Dspark.deploy.retainedApplications=200 -Dspark.master.rest.enabled=false"
    export SPARK_WORKER_OPTS="-Dspark.port.maxRetries=0 -Dspark.worker.cleanup.enabled=true \
-Dspark.worker.cleanup.interval=600 -Dspark.worker.cleanup.appDataTtl=3600"
    unset SPARK_MASTER_HOST SPARK_MASTER_PORT SPARK_MASTER_WEBUI_PORT SPARK_WORKER_PORT \
        SPARK_WORKER_WEBUI_PORT SPARK_WORKER_CORES SPARK_WORKER_MEMORY SPARK_WORKER_INSTANCES
}

launch() {  # launch NAME PID_FILE LOG CLASS ARGS...: a detached daemon, its pid (the JVM's: spark-class execs java)
    local name=$1 pid_file=$2 log=$3
    shift 3
    start_marker "$log" "$name: $*"
    setsid nohup "$SPARK_HOME/bin/spark-class" "$@" </dev/null >>"$log" 2>&1 &
    echo $! >"$pid_file"
}

start_master() {
    launch master "$MASTER_PID_FILE" "$MASTER_LOG" org.apache.spark.deploy.master.Master \
        --host "$HOST" --port "$MASTER_PORT" --webui-port "$MASTER_UI_PORT"
}

start_worker() {
    launch worker "$WORKER_PID_FILE" "$WORKER_LOG" org.apache.spark.deploy.worker.Worker \
        --host "$HOST" --webui-port "$WORKER_UI_PORT" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" \
        --work-dir "$WORK_DIR" "$(master_url)"
}

# stop_daemon NAME PID_FILE CLASS: TERM, then KILL after the wait; its process group too (the worker's executors).
stop_daemon() {
    local name=$1 pid_file=$2 class=$3 pid pgid
    if ! pid=$(pid_in "$pid_file" "$class"); then
        rm -f "$pid_file"
        return 0
    fi
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || pgid=""
    kill -TERM "$pid" 2>/dev/null || true
    await_exit "$pid" "$name" || true
    # Anything left in the daemon's own process group (setsid made it the leader) is its child.
    if [[ $pgid == "$pid" ]] && kill -0 -- "-$pgid" 2>/dev/null; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        sleep 2
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

# --------------------------------------------------------------------------- start / stop / status / apps

cmd_start() {
    require_java
    require_python
    mkdir -p "$BASE" "$WORK_DIR" "$LOCAL_DIR" "$CONF_DIR"
    load_state
    if master_pid >/dev/null && worker_pid >/dev/null && answers; then
        say "already running: $(master_json summary)"
        addresses
        return 0
    fi
    daemon_env
    local started=$SECONDS pid
    if pid=$(master_pid) && ! master_json summary >/dev/null; then
        say "master pid $pid is running but does not answer; stopping it"
        stop_daemon worker "$WORKER_PID_FILE" deploy.worker.Worker
        stop_daemon master "$MASTER_PID_FILE" deploy.master.Master
    fi
    if ! master_pid >/dev/null; then
        # A worker without our master is useless; start both afresh with the requested ports.
        stop_daemon worker "$WORKER_PID_FILE" deploy.worker.Worker
        MASTER_PORT="${PIPEZONE_SPARK_MASTER_PORT:-7077}"
        MASTER_UI_PORT="${PIPEZONE_SPARK_MASTER_UI_PORT:-8090}"
        WORKER_UI_PORT="${PIPEZONE_SPARK_WORKER_UI_PORT:-8091}"
        local port
        for port in "$MASTER_PORT" "$MASTER_UI_PORT" "$WORKER_UI_PORT"; do
            require_free_port "$port" "set PIPEZONE_SPARK_MASTER_PORT / _MASTER_UI_PORT / _WORKER_UI_PORT"
        done
        save_state
        start_master
    elif ! worker_pid >/dev/null; then
        rm -f "$WORKER_PID_FILE"
        require_free_port "$WORKER_UI_PORT" "set PIPEZONE_SPARK_WORKER_UI_PORT"
    fi
    # The worker registers itself (and retries) while the master comes up.
    worker_pid >/dev/null || start_worker
    until answers; do
        master_pid >/dev/null || fail_with_log "the master exited during start-up"
        worker_pid >/dev/null || fail_with_log "the worker exited during start-up"
        if (( SECONDS - started >= WAIT_SECONDS )); then
            fail_with_log "no alive worker at http://$HOST:$MASTER_UI_PORT/json/ within ${WAIT_SECONDS} s (the cluster is left running; 'stop' to end it)"
        fi
        sleep 0.5
    done
    say "running: $(master_json summary), started in $((SECONDS - started)) s"
    addresses
}

cmd_stop() {
    if ! master_pid >/dev/null && ! worker_pid >/dev/null; then
        rm -f "$MASTER_PID_FILE" "$WORKER_PID_FILE"
        say "not running"
        return 0
    fi
    stop_daemon worker "$WORKER_PID_FILE" deploy.worker.Worker
    stop_daemon master "$MASTER_PID_FILE" deploy.master.Master
    say "stopped"
}

cmd_status() {
    require_python
    load_state
    if answers; then
        say "running: $(master_json summary)"
        addresses
        return 0
    fi
    if master_json summary >/dev/null; then
        say "not ready: $(master_json summary)"
    else
        say "not running"
    fi
    return 1
}

cmd_apps() {
    require_python
    load_state
    master_json apps || die "the master at http://$HOST:$MASTER_UI_PORT/json/ does not answer (run 'start')"
}

run_command "${1:-}" install start stop status apps
