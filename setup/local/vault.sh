#!/usr/bin/env bash
# A Vault-API server (OpenBao, the MPL fork of HashiCorp Vault) for the tests, run by the project itself
# (no Docker, no system service). Dev mode: in memory, unsealed, one root token; `start` seeds the KV v2
# secrets that the `services` profile reads (${vault:secret/pipezone/...#KEY}).
#
#   bash setup/local/vault.sh install   # build bao from source through the Go module proxy, once per machine
#   bash setup/local/vault.sh start     # dev server on 127.0.0.1:8200, then seed secret/pipezone/*; re-seeds if running
#   bash setup/local/vault.sh stop      # shutdown (dev mode keeps nothing)
#   bash setup/local/vault.sh status    # exit 0 when the server answers initialized and unsealed
#   bash setup/local/vault.sh env       # export VAULT_ADDR=... / VAULT_TOKEN=... lines: eval "$(... env)"
#
# Env: PIPEZONE_VAULT_PORT (8200), PIPEZONE_VAULT_TOKEN (pipezone-dev-root), PIPEZONE_VAULT_WAIT (60),
# PIPEZONE_TOOLS_DIR (~/.cache/pipezone/tools), and the seeded values PIPEZONE_MINIO_USER (pipezone),
# PIPEZONE_MINIO_PASSWORD (pipezone-dev-secret), PIPEZONE_MARIADB_PASSWORD (pipezone-dev).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${PIPEZONE_VAULT_PORT:-8200}"
TOKEN="${PIPEZONE_VAULT_TOKEN:-pipezone-dev-root}"
HOST=127.0.0.1
WAIT_SECONDS="${PIPEZONE_VAULT_WAIT:-60}"
MINIO_USER="${PIPEZONE_MINIO_USER:-pipezone}"
MINIO_PASSWORD="${PIPEZONE_MINIO_PASSWORD:-pipezone-dev-secret}"
MARIADB_USER=pipezone
MARIADB_PASSWORD="${PIPEZONE_MARIADB_PASSWORD:-pipezone-dev}"

# The pinned release. OpenBao's main module is `github.com/openbao/openbao` (no /v2 suffix), so its v2.x tags
# are not valid module versions: the proxy serves the release commit under its pseudo-version instead.
OPENBAO_VERSION=2.4.0
OPENBAO_MODULE=github.com/openbao/openbao
OPENBAO_MODULE_VERSION=v0.0.0-20250828202315-f9407a27fbee  # = tag v2.4.0 (CHANGELOG: 2.4.0, August 28, 2025)
OPENBAO_COMMIT=f9407a27fbee45f62ba521bba2bf1e2360c61031
OPENBAO_BUILD_DATE=2025-08-28T20:23:15Z
# The nested modules that go.mod replaces with ./DIR and the build needs (api/auth/approle and userpass are
# not imported): the release's own api and sdk, and the api/auth/kubernetes version go.mod requires.
OPENBAO_NESTED=(api@v2.4.0 sdk@v2.4.0 api/auth/kubernetes@v2.0.1)

TOOLS="${PIPEZONE_TOOLS_DIR:-$HOME/.cache/pipezone/tools}"
PREFIX="$TOOLS/openbao-$OPENBAO_VERSION"
BAO="$PREFIX/bin/bao"
BUILD_LOG="$PREFIX/build.log"

BASE="$ROOT/.pipezone/services/vault"
LOG="$BASE/vault.log"
PID_FILE="$BASE/vault.pid"
STATE_FILE="$BASE/vault.state"  # port and root token of the running server (mode 600)

NAME=vault
LOGS=("$LOG")
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

# --------------------------------------------------------------------------- install

installed() {
    [[ -x "$BAO" ]] && "$BAO" version 2>/dev/null | grep -q "v$OPENBAO_VERSION"
}

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        echo /usr/local/go/bin/go
    else
        return 1
    fi
}

module_dir() {  # module_dir GO MODULE@VERSION WORKDIR: download through the proxy, print its source folder
    local go=$1 module=$2 info dir
    if ! info=$(cd "$3" && "$go" mod download -json "$module" 2>>"$BUILD_LOG"); then
        echo "$info" >>"$BUILD_LOG"
        fail_with_log "go mod download $module failed" "$BUILD_LOG"
    fi
    dir=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -n $dir && -f "$dir/go.mod" ]] || fail_with_log "go mod download $module gave no source folder" "$BUILD_LOG"
    echo "$dir"
}

cmd_install() {
    if installed; then
        say "installed ($("$BAO" version | head -n1), $BAO)"
        return 0
    fi
    local go
    go=$(find_go) || die "go is missing: OpenBao $OPENBAO_VERSION is built from source and needs Go >= 1.24.6"
    mkdir -p "$PREFIX/bin"
    # One build at a time per machine: a second install waits for the first and then finds the binary.
    exec 9>"$PREFIX/.install.lock"
    flock 9
    if installed; then
        say "installed ($("$BAO" version | head -n1), $BAO)"
        return 0
    fi
    local started=$SECONDS work
    work=$(mktemp -d "${TMPDIR:-/tmp}/pipezone-openbao.XXXXXX")
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    : >"$BUILD_LOG"
    say "building OpenBao $OPENBAO_VERSION ($OPENBAO_MODULE@$OPENBAO_MODULE_VERSION) with $("$go" version | cut -d' ' -f3); this takes several minutes"
    # `go install mod@version` refuses a module whose go.mod has replace directives (./api, ./sdk), so:
    # download the module source, copy it somewhere writable and build there. A module zip leaves out the
    # nested modules those replaces point at (./api, ./sdk, ...): they are filled from their own zips.
    local dir
    dir=$(module_dir "$go" "$OPENBAO_MODULE@$OPENBAO_MODULE_VERSION" "$work") || exit 1
    cp -R "$dir" "$work/src"
    local sub version
    for sub in "${OPENBAO_NESTED[@]}"; do
        version=${sub#*@}
        sub=${sub%@*}
        dir=$(module_dir "$go" "$OPENBAO_MODULE/$sub/v2@$version" "$work") || exit 1
        rm -rf "${work:?}/src/$sub"
        mkdir -p "$(dirname "$work/src/$sub")"
        cp -R "$dir" "$work/src/$sub"
    done
    chmod -R u+w "$work/src"
    # No `ui` tag: the web UI's assets are not in the module and the API is all the tests need.
    # CGO off, like the release builds; -buildvcs=false: the copy is not a checkout.
    local ldflags="-s -w -X $OPENBAO_MODULE/version.fullVersion=$OPENBAO_VERSION"
    ldflags+=" -X $OPENBAO_MODULE/version.GitCommit=$OPENBAO_COMMIT -X $OPENBAO_MODULE/version.BuildDate=$OPENBAO_BUILD_DATE"
    if ! (cd "$work/src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" \
        "$go" build -buildvcs=false -trimpath -tags openbao -ldflags "$ldflags" -o "$BAO.tmp" . >>"$BUILD_LOG" 2>&1); then
        rm -f "$BAO.tmp"
        fail_with_log "go build of OpenBao $OPENBAO_VERSION failed" "$BUILD_LOG"
    fi
    mv -f "$BAO.tmp" "$BAO"
    installed || fail_with_log "the built $BAO does not report v$OPENBAO_VERSION" "$BUILD_LOG"
    say "installed ($("$BAO" version | head -n1), $BAO) in $((SECONDS - started)) s"
}

# --------------------------------------------------------------------------- helpers

server_pid() { pid_in "$PID_FILE" ' server -dev '; }

state() {  # state port|token: what the running server was started with, else the configured value
    local key=$1 line
    if [[ -f "$STATE_FILE" ]]; then
        while IFS='=' read -r k v; do
            if [[ $k == "$key" ]]; then line=$v; fi
        done <"$STATE_FILE"
    fi
    if [[ -n ${line:-} ]]; then echo "$line"; elif [[ $key == port ]]; then echo "$PORT"; else echo "$TOKEN"; fi
}

address() { echo "http://$HOST:$PORT"; }

health() {  # the body of /v1/sys/health; fails unless initialized and unsealed (200 active, 429 standby)
    local body code
    body=$(curl -sS --max-time 3 -w '\n%{http_code}' "$(address)/v1/sys/health" 2>/dev/null) || return 1
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    [[ $code == 200 || $code == 429 ]] || return 1
    [[ $body == *'"initialized":true'* && $body == *'"sealed":false'* ]] || return 1
    echo "$body"
}

answers() { health >/dev/null; }

server_version() { health | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'; }

json_string() {  # a JSON string literal
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

api() {  # api METHOD PATH [JSON]: prints the body, fails on HTTP >= 400 (the body then goes to stderr)
    local method=$1 path=$2 data=${3:-} out code
    local args=(-sS --max-time 10 -X "$method" -H "X-Vault-Token: $TOKEN" -w '\n%{http_code}')
    if [[ -n $data ]]; then args+=(-H 'Content-Type: application/json' --data-binary @-); fi
    out=$(printf '%s' "$data" | curl "${args[@]}" "$(address)/v1/$path") || return 1
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [[ $code =~ ^[0-9]+$ ]] && (( code < 400 )); then
        printf '%s' "$out"
        return 0
    fi
    echo "vault: $method /v1/$path: HTTP $code ${out:0:300}" >&2
    return 1
}

ensure_kv2() {  # a KV v2 engine at secret/ (dev mode mounts one; enable or upgrade it if not)
    local mount
    if mount=$(api GET sys/mounts/secret 2>/dev/null); then
        if [[ $mount =~ \"options\":\{[^}]*\"version\":\"2\" ]]; then
            return 0
        fi
        [[ $mount == *'"type":"kv"'* ]] || { say "secret/ is mounted but is not a kv engine"; return 1; }
        say "upgrading the kv engine at secret/ to version 2"
        api POST sys/mounts/secret/tune '{"options":{"version":"2"}}' >/dev/null
    else
        say "enabling a KV v2 engine at secret/"
        api POST sys/mounts/secret '{"type":"kv","options":{"version":"2"}}' >/dev/null
    fi
}

put_secret() {  # put_secret PATH KEY VALUE [KEY VALUE ...] under secret/ (KV v2: a new version)
    local path=$1 body="" tries=0
    shift
    while (( $# >= 2 )); do
        body+="${body:+,}$(json_string "$1"):$(json_string "$2")"
        shift 2
    done
    # A freshly enabled or upgraded engine refuses writes for a moment while it upgrades: retry briefly.
    until api POST "secret/data/$path" "{\"data\":{$body}}" >/dev/null 2>"$BASE/.seed.err"; do
        tries=$((tries + 1))
        if (( tries >= 20 )); then
            cat "$BASE/.seed.err" >&2
            return 1
        fi
        sleep 0.5
    done
    rm -f "$BASE/.seed.err"
}

seed() {
    ensure_kv2 || return 1
    put_secret pipezone/minio access_key "$MINIO_USER" secret_key "$MINIO_PASSWORD" || return 1
    put_secret pipezone/mariadb user "$MARIADB_USER" password "$MARIADB_PASSWORD" || return 1
    # Read one back: the value must be there as written.
    local got want html
    got=$(api GET secret/data/pipezone/minio) || return 1
    want="\"access_key\":$(json_string "$MINIO_USER")"
    html=${want//&/\\u0026}  # the server's JSON encoder writes & < > as \u0026 \u003c \u003e
    html=${html//</\\u003c}
    html=${html//>/\\u003e}
    [[ $got == *"$want"* || $got == *"$html"* ]] || {
        echo "vault: secret/pipezone/minio read back without the written access_key" >&2
        return 1
    }
}

seeded() { echo "secret/pipezone/minio (access_key, secret_key), secret/pipezone/mariadb (user, password)"; }

# --------------------------------------------------------------------------- start / stop / status / env

cmd_start() {
    installed || die "OpenBao $OPENBAO_VERSION is not installed: run 'bash setup/local/vault.sh install'"
    mkdir -p "$BASE"
    if server_pid >/dev/null; then
        local port token
        port=$(state port)
        token=$(state token)
        if [[ $port != "$PORT" ]]; then
            say "warning: running on port $port, not $PORT: run 'stop' first to change the port"
            PORT=$port
        fi
        if [[ $token != "$TOKEN" ]]; then
            say "warning: running with another root token than PIPEZONE_VAULT_TOKEN: run 'stop' first to change it"
            TOKEN=$token
        fi
        if answers; then
            seed || fail_with_log "could not seed the secrets"
            say "already running at $(address); seeded $(seeded)"
            return 0
        fi
    fi
    if pid=$(server_pid); then
        say "pid $pid is running but does not answer; stopping it"
        cmd_stop
    fi
    rm -f "$PID_FILE" "$STATE_FILE"
    require_free_port "$PORT" "set PIPEZONE_VAULT_PORT"
    local started=$SECONDS
    start_marker "$LOG" "on $HOST:$PORT"
    # -dev-no-store-token: leave ~/.vault-token alone. The cluster listener takes the next port (PORT+1).
    (umask 077 && printf 'port=%s\ntoken=%s\n' "$PORT" "$TOKEN" >"$STATE_FILE")
    setsid nohup "$BAO" server -dev -dev-listen-address="$HOST:$PORT" -dev-root-token-id="$TOKEN" \
        -dev-no-store-token </dev/null >>"$LOG" 2>&1 &
    local launcher=$!
    echo "$launcher" >"$PID_FILE"
    await_ready "$started" "$launcher" bao "$PID_FILE" "$STATE_FILE"
    seed || fail_with_log "could not seed the secrets"
    say "running at $(address) (OpenBao $(server_version)), started in $((SECONDS - started)) s; seeded $(seeded)"
    say "VAULT_ADDR=$(address), VAULT_TOKEN=the root token (PIPEZONE_VAULT_TOKEN, default pipezone-dev-root); or: eval \"\$(bash setup/local/vault.sh env)\""
}

cmd_stop() {
    stop_server bao "$PID_FILE" "$STATE_FILE"
}

cmd_status() {
    if server_pid >/dev/null; then PORT=$(state port); fi
    if answers; then
        say "running at $(address) (OpenBao $(server_version), initialized and unsealed)"
        return 0
    fi
    say "not running"
    return 1
}

cmd_env() {
    if server_pid >/dev/null; then
        PORT=$(state port)
        TOKEN=$(state token)
    fi
    printf 'export VAULT_ADDR=%q\n' "$(address)"
    printf 'export VAULT_TOKEN=%q\n' "$TOKEN"
}

run_command "${1:-}" install start stop status env
