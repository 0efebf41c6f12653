#!/usr/bin/env bash
# A PostgreSQL server for the tests, run by the project itself (no Docker, no system service).
#
#   bash setup/local/postgres.sh install   # apt-get install postgresql (+ contrib, wal2json), only what is missing
#   bash setup/local/postgres.sh start     # first start initialises .pipezone/services/postgres/; no-op if running
#   bash setup/local/postgres.sh stop      # clean fast shutdown (pg_ctl stop -m fast)
#   bash setup/local/postgres.sh status    # exit 0 when the server answers
#
# Env: PIPEZONE_POSTGRES_PORT (5433), PIPEZONE_POSTGRES_PASSWORD (pipezone-dev) for role `pipezone`,
# PIPEZONE_POSTGRES_WAIT (60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${PIPEZONE_POSTGRES_PORT:-5433}"
PASSWORD="${PIPEZONE_POSTGRES_PASSWORD:-pipezone-dev}"
HOST=127.0.0.1
DB_USER=pipezone
DB_NAME=pipezone
ADMIN=postgres   # the bootstrap superuser, reachable only over the private unix socket
WAIT_SECONDS="${PIPEZONE_POSTGRES_WAIT:-60}"

BASE="$ROOT/.pipezone/services/postgres"
DATA="$BASE/data"
LOG="$BASE/postgres.log"
SOCKET_DIR="$BASE"
# The socket is SOCKET_DIR/.s.PGSQL.<port>, and a unix socket path is limited to 107 bytes: a deep
# checkout falls back to a folder in /tmp (one per checkout).
if (( ${#SOCKET_DIR} + 16 > 100 )); then
    SOCKET_DIR="/tmp/pipezone-postgres-$(printf '%s' "$BASE" | sha1sum | cut -c1-12)"
fi

export PATH="$PATH:/usr/sbin:/usr/local/sbin"

NAME=postgres
LOGS=("$LOG")
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

# The server's binaries: Debian keeps one folder per major version (/usr/lib/postgresql/<ver>/bin). An
# existing data folder needs the version that created it; otherwise the newest installed one.
pg_bin() {
    local dir version
    if [[ -f "$DATA/PG_VERSION" ]]; then
        version=$(<"$DATA/PG_VERSION")
        [[ -x "/usr/lib/postgresql/$version/bin/postgres" ]] && { echo "/usr/lib/postgresql/$version/bin"; return 0; }
    fi
    while read -r dir; do
        [[ -x "$dir/postgres" ]] && { echo "$dir"; return 0; }
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    dir=$(command -v postgres 2>/dev/null) && { dirname "$dir"; return 0; }
    return 1
}

BIN=$(pg_bin || true)

# postgres refuses to run as root: as root, the server and its tools run as the package's `postgres` user
# (setpriv execs, so a backgrounded server's $! is the postmaster itself); as anyone else, as that user.
# From inside BASE, so a cwd the server's user may not read (root's home) is no concern.
RUNAS=()
[[ $(id -u) -ne 0 ]] || RUNAS=(setpriv --reuid=postgres --regid=postgres --init-groups --)
as_server_user() { (cd "$BASE" && exec "${RUNAS[@]}" "$@"); }

contrib_installed() {  # hstore/citext ship in postgresql-contrib (a separate package before version 10)
    local share
    share=$("$BIN/pg_config" --sharedir 2>/dev/null) || share="/usr/share/postgresql/$(basename "$(dirname "$BIN")")"
    [[ -f "$share/extension/hstore.control" && -f "$share/extension/citext.control" ]]
}

server_major() {  # "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" -> 15
    "$BIN/postgres" --version 2>/dev/null | sed -n -E '1s/^[^0-9]*([0-9]+).*/\1/p'
}

wal2json_installed() {  # the logical decoding plugin change data capture reads (postgresql-<major>-wal2json)
    local lib
    lib=$("$BIN/pg_config" --pkglibdir 2>/dev/null) || lib="/usr/lib/postgresql/$(server_major)/lib"
    [[ -f "$lib/wal2json.so" ]]
}

server_installed() { [[ -n $BIN && -x "$BIN/postgres" && -x "$BIN/psql" ]] && contrib_installed; }

installed() { server_installed && wal2json_installed; }

version() { "$BIN/postgres" --version 2>/dev/null | head -n1; }

# --------------------------------------------------------------------------- install

cmd_install() {
    if installed; then
        say "installed ($(version), $BIN)"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "postgres (or its wal2json plugin) is missing; run 'bash setup/local/postgres.sh install' as root (apt-get)"
    local started=$SECONDS plugin
    if ! server_installed; then
        apt_install postgresql postgresql postgresql-contrib
        # If a service manager started the system cluster anyway, stop it and keep it from starting again
        # (`service postgresql` only knows the clusters under /etc/postgresql, never ours).
        service postgresql stop >/dev/null 2>&1 || true
        if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
            systemctl disable --now postgresql >/dev/null 2>&1 || true
        fi
        BIN=$(pg_bin) || die "apt-get finished but the postgres binary is still missing"
        server_installed || die "apt-get finished but hstore/citext (postgresql-contrib) are still missing"
    fi
    # wal2json for the server's own major version (the one pg_bin runs), once the server is there.
    if ! wal2json_installed; then
        plugin="postgresql-$(server_major)-wal2json"
        apt_install "$plugin" "$plugin"
        wal2json_installed || die "apt-get finished but $plugin (wal2json.so) is still missing"
    fi
    say "installed ($(version), $BIN) in $((SECONDS - started)) s"
}

# --------------------------------------------------------------------------- helpers

# postmaster.pid: pid, data folder, start time, port, socket folder, listen address, shmem key, status.
pid_field() { [[ -f "$DATA/postmaster.pid" ]] && sed -n "${1}p" "$DATA/postmaster.pid"; }

server_pid() {  # the live postmaster of our data folder (a recycled pid is not mistaken for it)
    local pid
    pid=$(pid_field 1 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "postgres" || return 1
    echo "$pid"
}

running_port() {
    local port
    port=$(pid_field 4 2>/dev/null) && [[ $port =~ ^[0-9]+$ ]] && { echo "$port"; return 0; }
    echo "$PORT"
}

socket_dir() {
    local dir
    dir=$(pid_field 5 2>/dev/null) && [[ -n $dir ]] && { echo "$dir"; return 0; }
    echo "$SOCKET_DIR"
}

answers() {
    [[ -n $BIN ]] || return 1
    "$BIN/pg_isready" --quiet --host="$(socket_dir)" --port="$(running_port)" --username="$ADMIN" \
        --dbname=postgres --timeout=2 >/dev/null 2>&1
}

sql() {  # psql as the bootstrap superuser over the socket (trust, the socket is the server user's only)
    as_server_user "$BIN/psql" --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --host="$(socket_dir)" \
        --port="$(running_port)" --username="$ADMIN" --dbname=postgres "$@"
}

# After a crash the killed postmaster's pid can linger a moment (a zombie, its children exiting), and
# postgres refuses a lock file whose pid is alive: wait for it, and drop a lock held by a pid that is not a
# postgres (postgres's own shared-memory check still refuses a data folder old backends use).
clear_stale_lock() {
    local pid waited=0
    pid=$(pid_field 1 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    while kill -0 "$pid" 2>/dev/null && (( waited < 20 )); do
        sleep 0.5
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- postgres; then
        say "removing $DATA/postmaster.pid: its pid $pid is not a postgres"
        rm -f "$DATA/postmaster.pid"
    fi
}

address() { echo "postgresql://$DB_USER@$HOST:$PORT/$DB_NAME (socket $(socket_dir))"; }

provision() {
    # The password travels as a psql variable (:'pw' quotes it), never inside the SQL text.
    sql --set=pw="$PASSWORD" <<SQL
SELECT 'CREATE ROLE $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') \gexec
ALTER ROLE $DB_USER WITH LOGIN SUPERUSER REPLICATION PASSWORD :'pw';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING ''UTF8'''
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

prepare_folders() {
    mkdir -p "$BASE" "$SOCKET_DIR"
    chmod 700 "$SOCKET_DIR"
    if [[ $(id -u) -eq 0 ]]; then
        # The server's user owns its folders; a data folder made by another user (a non-root start) too.
        chown postgres:postgres "$BASE" "$SOCKET_DIR"
        if [[ -d "$DATA" && $(stat -c %U "$DATA") != postgres ]]; then
            chown -R postgres:postgres "$DATA"
        fi
        as_server_user test -w "$BASE" \
            || die "user postgres cannot write $BASE (a parent folder is closed to it)"
    fi
}

initialise() {
    [[ -f "$DATA/PG_VERSION" ]] && return 0
    say "initialising $DATA"
    rm -rf "$DATA.tmp"
    local locale=(--no-locale)
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
        locale=(--locale=C.UTF-8)
    fi
    # Into a temporary folder first: an interrupted initialisation is redone on the next start.
    # Local (socket) logins are trusted: the socket folder is 0700, the server user's alone; TCP needs a password.
    if ! as_server_user "$BIN/initdb" --pgdata="$DATA.tmp" --username="$ADMIN" --encoding=UTF8 "${locale[@]}" \
        --auth-local=trust --auth-host=scram-sha-256 >>"$LOG" 2>&1; then
        fail_with_log "initdb failed"
    fi
    rm -rf "$DATA"
    mv "$DATA.tmp" "$DATA"
}

# --------------------------------------------------------------------------- start / stop / status

cmd_start() {
    server_installed || die "postgres is not installed: run 'bash setup/local/postgres.sh install'"
    prepare_folders
    reuse_running "could not create the database and role" && return 0
    clear_stale_lock
    require_free_port "$PORT" "set PIPEZONE_POSTGRES_PORT"
    initialise
    local started=$SECONDS
    start_marker "$LOG" "on $HOST:$PORT"
    # Everything on the command line (it wins over postgresql.conf). wal_level=logical and the slots and
    # senders are for change data capture; the time zone stays the server's default: clients set UTC.
    (
        cd "$BASE"
        exec setsid "${RUNAS[@]}" "$BIN/postgres" -D "$DATA" -c listen_addresses="$HOST" -c port="$PORT" \
            -c unix_socket_directories="$SOCKET_DIR" -c unix_socket_permissions=0700 \
            -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 \
            -c max_connections=200 -c logging_collector=off
    ) </dev/null >>"$LOG" 2>&1 &
    await_ready "$started" $! postgres
    provision || fail_with_log "could not create the database and role"
    say "running at $(address), started in $((SECONDS - started)) s"
}

stop_request() {  # a fast shutdown: open sessions are rolled back, then a clean checkpoint
    as_server_user "$BIN/pg_ctl" stop --pgdata="$DATA" --mode=fast --no-wait >/dev/null 2>&1 \
        || kill -INT "$1" 2>/dev/null || true
}

cmd_stop() { stop_server postgres; }

cmd_status() { report_status; }

run_command "${1:-}" install start stop status
