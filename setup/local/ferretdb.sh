#!/usr/bin/env bash
# A MongoDB-wire-protocol server (FerretDB on its SQLite backend) for the MongoDB source's live tests, run by
# the project itself (no Docker, no system service, no MongoDB server).
#
#   bash setup/local/ferretdb.sh install   # build the pinned FerretDB from source through the Go module proxy, once per machine
#   bash setup/local/ferretdb.sh start     # serve .pipezone/services/ferretdb/data on 127.0.0.1:27017; no-op if running
#   bash setup/local/ferretdb.sh stop      # TERM, then KILL after PIPEZONE_FERRETDB_WAIT
#   bash setup/local/ferretdb.sh status    # exit 0 when the server answers a MongoDB `ping`
#   bash setup/local/ferretdb.sh env       # export PIPEZONE_MONGO_URL=... line: eval "$(... env)"
#
# Env: PIPEZONE_FERRETDB_PORT (27017), PIPEZONE_FERRETDB_WAIT (60), PIPEZONE_FERRETDB_LOG_LEVEL (error),
# PIPEZONE_TOOLS_DIR ($HOME/.cache/pipezone/tools). The SQLite backend has no authentication: no user, no
# password.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HOST=127.0.0.1
PORT="${PIPEZONE_FERRETDB_PORT:-27017}"
WAIT_SECONDS="${PIPEZONE_FERRETDB_WAIT:-60}"
# error, not warn: at warn FerretDB dumps every command it answers with ok: 0 (some 20 lines each), and
# pymongo's endSessions, sent by every MongoClient.close(), is one it does not know.
LOG_LEVEL="${PIPEZONE_FERRETDB_LOG_LEVEL:-error}"

# The pinned release (v1: its own SQLite backend; v2 needs PostgreSQL with the DocumentDB extension).
MODULE=github.com/FerretDB/FerretDB
VERSION=v1.24.2
GO_MIN_MINOR=24                     # go.mod: go 1.24

TOOLS_DIR="${PIPEZONE_TOOLS_DIR:-$HOME/.cache/pipezone/tools}"
INSTALL_DIR="$TOOLS_DIR/ferretdb-$VERSION"
FERRETDB="$INSTALL_DIR/ferretdb"
BUILD_LOG="$INSTALL_DIR/build.log"

BASE="$ROOT/.pipezone/services/ferretdb"
DATA="$BASE/data"                   # the SQLite backend: one <database>.sqlite file per MongoDB database
LOG="$BASE/ferretdb.log"
PID_FILE="$BASE/ferretdb.pid"
PORT_FILE="$BASE/ferretdb.port"     # the port the running server was started with
# --state-dir is BASE: FerretDB keeps its state.json (instance UUID, telemetry choice) there.

export PATH="$PATH:/usr/local/go/bin"

NAME=ferretdb
LOGS=("$LOG")
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

# --------------------------------------------------------------------------- install

installed() {  # the output is captured first: `grep -q` quitting early would SIGPIPE it (pipefail)
    local out
    [[ -x "$FERRETDB" ]] && out=$("$FERRETDB" --version 2>/dev/null) && grep -qx "version: $VERSION" <<<"$out"
}

cmd_install() {
    if installed; then
        say "installed ($FERRETDB, $MODULE@$VERSION)"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go is missing (Go >= 1.$GO_MIN_MINOR is needed to build FerretDB)"
    local go_version minor
    go_version=$(GOTOOLCHAIN=local go env GOVERSION)
    minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
    if ! [[ $minor =~ ^[0-9]+$ ]] || (( minor < GO_MIN_MINOR )); then
        die "$go_version is too old: FerretDB $VERSION needs Go >= 1.$GO_MIN_MINOR"
    fi
    mkdir -p "$INSTALL_DIR"
    # One build at a time per machine: a second install waits for the first and then finds the binary.
    exec 9>"$INSTALL_DIR/.install.lock"
    flock 9
    if installed; then
        say "installed ($FERRETDB, $MODULE@$VERSION) by another process"
        return 0
    fi
    local started=$SECONDS work
    work=$(mktemp -d "${TMPDIR:-/tmp}/pipezone-ferretdb.XXXXXX")
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    : >"$BUILD_LOG"
    # GOTOOLCHAIN=local: build with this Go, never download the toolchain that go.mod names. The default
    # module cache (~/go/pkg/mod) and build cache are kept, so a rebuild is fast.
    export GOTOOLCHAIN=local CGO_ENABLED=0
    say "building $MODULE@$VERSION with $go_version (a minute or two with a warm module cache)"
    # `go install $MODULE/cmd/ferretdb@$VERSION` builds, but the binary panics at start ("Invalid
    # build/version/version.txt file content"): FerretDB embeds build/version/*.txt, which its Taskfile
    # generates from `git describe`, and the module zip has no version.txt. So: download the module, copy it
    # somewhere writable, write version.txt and build there.
    local info dir
    if ! info=$(cd "$work" && go mod download -json "$MODULE@$VERSION" 2>>"$BUILD_LOG"); then
        echo "$info" >>"$BUILD_LOG"
        fail_with_log "go mod download $MODULE@$VERSION failed" "$BUILD_LOG"
    fi
    dir=$(printf '%s\n' "$info" | sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
    [[ -n $dir && -f "$dir/go.mod" ]] || fail_with_log "go mod download $MODULE@$VERSION gave no source folder" "$BUILD_LOG"
    cp -R "$dir" "$work/src"
    chmod -R u+w "$work/src"
    echo "$VERSION" >"$work/src/build/version/version.txt"
    # -buildvcs=false: the copy is not a checkout (commit.txt stays "unknown").
    if ! (cd "$work/src" && GOFLAGS=-mod=readonly \
        go build -buildvcs=false -trimpath -o "$FERRETDB.tmp" ./cmd/ferretdb >>"$BUILD_LOG" 2>&1); then
        rm -f "$FERRETDB.tmp"
        fail_with_log "go build of FerretDB $VERSION failed" "$BUILD_LOG"
    fi
    mv -f "$FERRETDB.tmp" "$FERRETDB"
    installed || fail_with_log "the built $FERRETDB does not report $VERSION" "$BUILD_LOG"
    printf 'built %s with %s in %s s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$go_version" \
        "$((SECONDS - started))" >>"$BUILD_LOG"
    say "installed ($FERRETDB, $MODULE@$VERSION) in $((SECONDS - started)) s"
}

# --------------------------------------------------------------------------- helpers

server_pid() { pid_in "$PID_FILE" "--sqlite-url=file:$DATA/"; }

running_port() {  # the port our running server was started with, else PORT
    local port=""
    if server_pid >/dev/null && [[ -f "$PORT_FILE" ]]; then
        read -r port <"$PORT_FILE" || true
    fi
    if [[ $port =~ ^[0-9]+$ ]]; then echo "$port"; else echo "$PORT"; fi
}

le32() {  # a little-endian int32 as printf escapes
    printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255))
}

# mongo_command PORT COMMAND: send {COMMAND: 1, $db: "admin"} as an OP_MSG over /dev/tcp and print the
# reply's document as hex bytes (" 0a 1b ..."); fails when nothing answers like a MongoDB server within 3 s.
mongo_command() {
    local port=$1 command=$2 doc_len msg_len bytes len reply
    doc_len=$((4 + 1 + ${#command} + 1 + 4 + 1 + 4 + 4 + 6 + 1))
    msg_len=$((16 + 4 + 1 + doc_len))
    {
        exec 3<>"/dev/tcp/$HOST/$port" || return 1
        # header: length, requestID, responseTo, opCode 2013 (OP_MSG); flagBits 0; section kind 0; the BSON.
        printf "$(le32 "$msg_len")$(le32 1)$(le32 0)$(le32 2013)$(le32 0)\\x00$(le32 "$doc_len")\\x10%s\\x00$(le32 1)\\x02\$db\\x00$(le32 6)admin\\x00\\x00" \
            "$command" >&3 || return 1
        read -r -a bytes < <(timeout 3 head -c 4 <&3 | od -An -v -tu1) || return 1
        (( ${#bytes[@]} == 4 )) || return 1
        len=$((bytes[0] + (bytes[1] << 8) + (bytes[2] << 16) + (bytes[3] << 24)))
        (( len > 21 && len < 1048576 )) || return 1
        reply=$(timeout 3 head -c $((len - 4)) <&3 | od -An -v -tx1 | tr -s ' \n' '  ') || return 1
        exec 3<&-
    } 2>/dev/null
    # requestID, responseTo, opCode (must be OP_MSG), flagBits, section kind: then the document.
    [[ ${reply:0:36} == " "??" "??" "??" "??" "??" "??" "??" "??" dd 07 00 00" ]] || return 1
    echo "${reply:51}"
}

bson_ok() {  # the reply document has ok: 1 (a double, or an int32)
    [[ $1 == *" 01 6f 6b 00 00 00 00 00 00 00 f0 3f"* || $1 == *" 10 6f 6b 00 01 00 00 00"* ]]
}

bson_string() {  # bson_string HEX KEY: the top-level string KEY of a reply document (first match)
    local hex=$1 key=$2 pattern=" 02" rest bytes len i out=""
    for (( i = 0; i < ${#key}; i++ )); do
        pattern+=$(printf ' %02x' "'${key:i:1}")
    done
    pattern+=" 00 "
    [[ $hex == *"$pattern"* ]] || return 1
    rest=${hex#*"$pattern"}
    read -r -a bytes <<<"$rest"
    len=$((16#${bytes[0]} + (16#${bytes[1]} << 8)))
    for (( i = 4; i < 4 + len - 1 && i < ${#bytes[@]}; i++ )); do
        out+="\\x${bytes[i]}"
    done
    printf '%b\n' "$out"
}

answers() {
    local reply
    reply=$(mongo_command "$(running_port)" ping) && bson_ok "$reply"
}

server_version() {  # "FerretDB v1.24.2, MongoDB 7.0.42" from buildInfo
    local reply ferret mongo
    reply=$(mongo_command "$(running_port)" buildInfo) || return 0
    ferret=$(bson_string "$reply" ferretdbVersion) || ferret="?"
    mongo=$(bson_string "$reply" version) || mongo="?"
    echo "FerretDB $ferret, MongoDB $mongo"
}

address() { echo "mongodb://$HOST:$PORT/ (SQLite backend, no authentication)"; }

provision() { :; }  # nothing to create: MongoDB creates databases and collections on first write

# --------------------------------------------------------------------------- start / stop / status / env

cmd_start() {
    installed || die "FerretDB $VERSION is not installed: run 'bash setup/local/ferretdb.sh install'"
    mkdir -p "$BASE"
    reuse_running "could not provision" && return 0
    rm -f "$PID_FILE" "$PORT_FILE"
    require_free_port "$PORT" "set PIPEZONE_FERRETDB_PORT"
    mkdir -p "$DATA"
    local started=$SECONDS
    start_marker "$LOG" "on $HOST:$PORT"
    # --debug-addr=-: no metrics/pprof HTTP listener (its default 127.0.0.1:8088 would be one more port to
    # collide on, and a second FerretDB on this machine dies when it is taken). The SQLite URL must end in '/'.
    setsid nohup "$FERRETDB" --handler=sqlite --sqlite-url="file:$DATA/" --listen-addr="$HOST:$PORT" \
        --state-dir="$BASE" --debug-addr=- --telemetry=disable --log-level="$LOG_LEVEL" \
        </dev/null >>"$LOG" 2>&1 &
    local launcher=$!
    echo "$launcher" >"$PID_FILE"
    echo "$PORT" >"$PORT_FILE"
    await_ready "$started" "$launcher" ferretdb "$PID_FILE" "$PORT_FILE"
    say "running (pid $launcher) at $(address), $(server_version), started in $((SECONDS - started)) s"
}

cmd_stop() {
    stop_server ferretdb "$PID_FILE" "$PORT_FILE"
}

cmd_status() {
    local pid=""
    pid=$(server_pid) || pid=""
    PORT=$(running_port)
    if answers; then
        if [[ -n $pid ]]; then
            say "running (pid $pid) at $(address), $(server_version)"
        else
            say "a server answers at $(address), but not one this checkout started"
        fi
        return 0
    fi
    if [[ -n $pid ]]; then
        say "pid $pid is running but does not answer at $HOST:$PORT"
    else
        say "not running"
    fi
    return 1
}

cmd_env() {
    printf 'export PIPEZONE_MONGO_URL=%q\n' "mongodb://$HOST:$(running_port)/"
}

run_command "${1:-}" install start stop status env
