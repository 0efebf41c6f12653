#!/usr/bin/env bash
# A MariaDB server for the tests, run by the project itself (no Docker, no system service).
#
#   bash setup/local/mariadb.sh install   # apt-get install mariadb-server/-client, only when mariadbd is missing
#   bash setup/local/mariadb.sh start     # first start initialises .pipezone/services/mariadb/; no-op if running
#   bash setup/local/mariadb.sh stop      # clean shutdown
#   bash setup/local/mariadb.sh status    # exit 0 when the server answers
#
# Env: PIPEZONE_MARIADB_PORT (3307), PIPEZONE_MARIADB_PASSWORD (pipezone-dev) for user `pipezone`.
# The binary log is on in row format with full images and column names (binlog_row_metadata=FULL), as
# change data capture reads it (README, Change data capture); it expires after 3 days.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${PIPEZONE_MARIADB_PORT:-3307}"
PASSWORD="${PIPEZONE_MARIADB_PASSWORD:-pipezone-dev}"
HOST=127.0.0.1
DB_USER=pipezone
DB_NAME=pipezone
WAIT_SECONDS="${PIPEZONE_MARIADB_WAIT:-60}"

BASE="$ROOT/.pipezone/services/mariadb"
DATA="$BASE/data"
LOG="$BASE/mariadb.err"
PID_FILE="$BASE/mariadb.pid"
SOCKET="$BASE/mariadb.sock"
# A unix socket path is limited to 107 bytes; a deep checkout falls back to /tmp (one per checkout).
if (( ${#SOCKET} > 100 )); then
    SOCKET="/tmp/pipezone-mariadb-$(printf '%s' "$BASE" | sha1sum | cut -c1-12).sock"
fi

export PATH="$PATH:/usr/sbin:/usr/local/sbin"

NAME=mariadb
LOGS=("$LOG")
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

# mariadbd refuses to run as root unless told to; as anyone else it runs as that user.
as_user() { if [[ $(id -u) -eq 0 ]]; then echo "--user=root"; else echo "--user=$(id -un)"; fi; }

# --------------------------------------------------------------------------- install

cmd_install() {
    if command -v mariadbd >/dev/null 2>&1; then
        say "installed ($(mariadbd --version 2>/dev/null | head -n1))"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "mariadbd is missing; run 'bash setup/local/mariadb.sh install' as root (apt-get)"
    local started=$SECONDS
    apt_install mariadb-server mariadb-server mariadb-client
    # If a service manager started the system instance anyway, stop it and keep it from starting again.
    if pgrep -x mariadbd >/dev/null 2>&1 && [[ ! -f "$PID_FILE" ]]; then
        service mariadb stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl disable --now mariadb >/dev/null 2>&1 || true
    fi
    command -v mariadbd >/dev/null 2>&1 || die "apt-get finished but mariadbd is still missing"
    say "installed ($(mariadbd --version | head -n1)) in $((SECONDS - started)) s"
}

# --------------------------------------------------------------------------- helpers

server_pid() { pid_in "$PID_FILE" mariadbd; }

answers() {
    mariadb-admin --no-defaults --protocol=socket --socket="$SOCKET" --user=root \
        --connect-timeout=2 ping >/dev/null 2>&1
}

sql() { mariadb --no-defaults --protocol=socket --socket="$SOCKET" --user=root --batch "$@"; }

sql_string() {  # a single-quoted SQL literal
    local s=${1//\\/\\\\}
    printf "'%s'" "${s//\'/\'\'}"
}

running_port() { sql --skip-column-names -e 'SELECT @@port' 2>/dev/null || echo "$PORT"; }

address() { echo "mysql://$DB_USER@$HOST:$PORT/$DB_NAME (socket $SOCKET)"; }

provision() {
    local pw
    pw=$(sql_string "$PASSWORD")
    sql <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY $pw;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY $pw;
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY $pw;
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY $pw;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
}

initialise() {
    [[ -d "$DATA/mysql" ]] && return 0
    say "initialising $DATA"
    rm -rf "$DATA.tmp"
    mkdir -p "$DATA.tmp"
    # Into a temporary folder first: an interrupted initialisation is redone on the next start.
    if ! mariadb-install-db --no-defaults --datadir="$DATA.tmp" "$(as_user)" \
        --auth-root-authentication-method=socket --skip-test-db >>"$LOG" 2>&1; then
        fail_with_log "mariadb-install-db failed"
    fi
    rm -rf "$DATA"
    mv "$DATA.tmp" "$DATA"
}

# --------------------------------------------------------------------------- start / stop / status

cmd_start() {
    command -v mariadbd >/dev/null 2>&1 || die "mariadbd is not installed: run 'bash setup/local/mariadb.sh install'"
    mkdir -p "$BASE"
    reuse_running "could not create the database and user" && return 0
    rm -f "$PID_FILE" "$SOCKET"
    require_free_port "$PORT" "set PIPEZONE_MARIADB_PORT"
    initialise
    local started=$SECONDS
    start_marker "$LOG" "on $HOST:$PORT"
    setsid nohup mariadbd --no-defaults "$(as_user)" \
        --datadir="$DATA" --socket="$SOCKET" --pid-file="$PID_FILE" --log-error="$LOG" \
        --bind-address="$HOST" --port="$PORT" --skip-name-resolve \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        --innodb-buffer-pool-size=128M --max-connections=200 \
        --server-id=1 --log-bin=mariadb-bin --binlog-format=ROW --binlog-row-image=FULL \
        --binlog-row-metadata=FULL --binlog-expire-logs-seconds=259200 \
        </dev/null >>"$LOG" 2>&1 &
    await_ready "$started" $! mariadbd
    provision || fail_with_log "could not create the database and user"
    say "running at $(address), started in $((SECONDS - started)) s"
}

stop_request() {  # a clean shutdown through the socket; TERM when the server does not answer
    mariadb-admin --no-defaults --protocol=socket --socket="$SOCKET" --user=root shutdown >/dev/null 2>&1 \
        || kill -TERM "$1" 2>/dev/null || true
}

cmd_stop() { stop_server mariadbd "$PID_FILE"; }

cmd_status() { report_status; }

run_command "${1:-}" install start stop status
