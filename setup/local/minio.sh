#!/usr/bin/env bash
# A MinIO (S3) server for the lake, run by the project itself (no Docker, no system service).
#
#   bash setup/local/minio.sh install   # go install the pinned MinIO once per machine (into PIPEZONE_TOOLS_DIR)
#   bash setup/local/minio.sh start     # serve .pipezone/services/minio/data, create raw/bronze/silver/gold/quarantine/quality; no-op if running
#   bash setup/local/minio.sh stop      # TERM, then KILL after PIPEZONE_MINIO_WAIT
#   bash setup/local/minio.sh status    # exit 0 when /minio/health/ready answers
#
# Env: PIPEZONE_MINIO_PORT (9000), PIPEZONE_MINIO_CONSOLE_PORT (9001), PIPEZONE_MINIO_USER (pipezone),
# PIPEZONE_MINIO_PASSWORD (pipezone-dev-secret), PIPEZONE_MINIO_WAIT (60),
# PIPEZONE_TOOLS_DIR ($HOME/.cache/pipezone/tools).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HOST=127.0.0.1
PORT="${PIPEZONE_MINIO_PORT:-9000}"
CONSOLE_PORT="${PIPEZONE_MINIO_CONSOLE_PORT:-9001}"
ACCESS_KEY="${PIPEZONE_MINIO_USER:-pipezone}"
SECRET_KEY="${PIPEZONE_MINIO_PASSWORD:-pipezone-dev-secret}"
WAIT_SECONDS="${PIPEZONE_MINIO_WAIT:-60}"
REGION=us-east-1
BUCKETS=(raw bronze silver gold quarantine quality)
# How start signs its S3 calls: auto (curl --aws-sigv4 when curl >= 7.75, else python3), curl or python.
S3_CLIENT="${PIPEZONE_MINIO_S3_CLIENT:-auto}"

# MinIO community edition is source-only (no binaries since Oct 2025; repository archived Feb 2026): its
# README installs it with `go install github.com/minio/minio@...` from the Go module proxy. The module has
# no semver tags, so the pin is a pseudo-version. The last release, RELEASE.2025-10-15T17-29-55Z, is commit
# 9e49d5e7a648 = v0.0.0-20251015172955-9e49d5e7a648, but the module proxy reachable here refuses that
# version (403 "This module version is not available"); it serves only the final commit of the archived
# repository (2026-02-12, after that release), which is what we pin.
MODULE=github.com/minio/minio
VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
COMMIT=7aac2a2c5b7c                 # the pseudo-version's commit (12 hex digits)
COMMIT_TIME=2026-02-12T20:18:48Z    # the pseudo-version's commit time (UTC)
GO_MIN_MINOR=24                     # go.mod: go 1.24.0

TOOLS_DIR="${PIPEZONE_TOOLS_DIR:-$HOME/.cache/pipezone/tools}"
INSTALL_DIR="$TOOLS_DIR/minio-$VERSION"
MINIO="$INSTALL_DIR/bin/minio"

BASE="$ROOT/.pipezone/services/minio"
DATA="$BASE/data"
LOG="$BASE/minio.log"
PID_FILE="$BASE/minio.pid"
PORTS_FILE="$BASE/minio.ports"   # "API_PORT CONSOLE_PORT" of the running server

export PATH="$PATH:/usr/local/go/bin"

NAME=minio
LOGS=("$LOG")
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

# --------------------------------------------------------------------------- install

installed() { [[ -x "$MINIO" ]] && "$MINIO" --version >/dev/null 2>&1; }

cmd_install() {
    if installed; then
        say "installed ($MINIO, $MODULE@$VERSION)"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "go is missing (Go >= 1.$GO_MIN_MINOR is needed to build MinIO)"
    local go_version minor
    go_version=$(GOTOOLCHAIN=local go env GOVERSION)
    minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
    if ! [[ $minor =~ ^[0-9]+$ ]] || (( minor < GO_MIN_MINOR )); then
        die "$go_version is too old: MinIO $VERSION needs Go >= 1.$GO_MIN_MINOR"
    fi
    mkdir -p "$TOOLS_DIR"
    # One build at a time per machine: two checkouts installing at once wait for each other.
    exec 9>"$INSTALL_DIR.lock"
    flock 9
    if installed; then
        say "installed ($MINIO, $MODULE@$VERSION) by another process"
        return 0
    fi
    local started=$SECONDS
    local tmp="$INSTALL_DIR.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp/bin"
    trap 'rm -rf "'"$tmp"'"' EXIT
    # Like MinIO's Makefile: static, kqueue tag, version stamped by ldflags (gen-ldflags.go needs git).
    local ldflags="-s -w -X $MODULE/cmd.Version=$COMMIT_TIME -X $MODULE/cmd.CopyrightYear=${COMMIT_TIME:0:4}"
    ldflags+=" -X $MODULE/cmd.ReleaseTag=DEVELOPMENT.${COMMIT_TIME//:/-}"
    ldflags+=" -X $MODULE/cmd.CommitID=$COMMIT -X $MODULE/cmd.ShortCommitID=$COMMIT"
    local build=(-trimpath -tags kqueue -ldflags "$ldflags")
    # GOTOOLCHAIN=local: build with this Go, never download the toolchain that go.mod names.
    # The default module cache (~/go/pkg/mod) and build cache are kept, so a rebuild is fast.
    export GOTOOLCHAIN=local CGO_ENABLED=0
    say "building $MODULE@$VERSION with $go_version (a few minutes the first time)"
    local out="$tmp/go-install.log"
    if ! GOBIN="$tmp/bin" go install "${build[@]}" "$MODULE@$VERSION" 2>&1 | tee "$out"; then
        # `go install pkg@version` refuses a module whose go.mod has replace directives (this version has
        # none). Then build it as its README's `go build` does, inside the module's own folder: download the
        # module to the module cache and build there with its go.mod and go.sum.
        grep -q 'replace' "$out" || die "go install $MODULE@$VERSION failed (see above)"
        say "go install refused the module's replace directives; building inside the module folder"
        local dir
        dir=$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
            | sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
        [[ -n $dir && -d $dir ]] || die "go mod download $MODULE@$VERSION failed"
        (cd "$dir" && go mod download && go build "${build[@]}" -o "$tmp/bin/minio" .) \
            || die "go build in $dir failed"
    fi
    "$tmp/bin/minio" --version >/dev/null 2>&1 || die "the built minio does not run"
    printf 'module %s@%s\nbuilt %s with %s in %s s\n' "$MODULE" "$VERSION" \
        "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$go_version" "$((SECONDS - started))" >"$tmp/BUILD"
    rm -f "$out"
    rm -rf "$INSTALL_DIR"
    mv "$tmp" "$INSTALL_DIR"
    trap - EXIT
    say "installed $MINIO in $((SECONDS - started)) s"
}

# --------------------------------------------------------------------------- helpers

server_pid() { pid_in "$PID_FILE" 'minio server'; }

answers() { curl -fsS -o /dev/null --max-time 2 "http://$HOST:$PORT/minio/health/ready" 2>/dev/null; }

recorded_ports() {  # the ports the running server was started with
    [[ -f "$PORTS_FILE" ]] || return 0
    local api console
    read -r api console <"$PORTS_FILE" || true
    if [[ $api =~ ^[0-9]+$ && $console =~ ^[0-9]+$ ]]; then
        if [[ $api != "$PORT" || $console != "$CONSOLE_PORT" ]]; then
            say "warning: running on ports $api/$console, not $PORT/$CONSOLE_PORT: run 'stop' first to change them"
        fi
        PORT=$api
        CONSOLE_PORT=$console
    fi
}

address() { echo "http://$HOST:$PORT (S3 API, region $REGION, path-style)"; }

console_line() {
    local from="PIPEZONE_MINIO_PASSWORD"
    [[ -n "${PIPEZONE_MINIO_PASSWORD:-}" ]] || from="PIPEZONE_MINIO_PASSWORD, unset: the default pipezone-dev-secret"
    say "console http://$HOST:$CONSOLE_PORT, user $ACCESS_KEY, password from $from"
}

use_curl_sigv4() {  # curl >= 7.75 signs requests itself (--aws-sigv4)
    case "$S3_CLIENT" in
        curl) return 0 ;;
        python) return 1 ;;
    esac
    local v major minor
    v=$(curl --version | head -n1 | cut -d' ' -f2)
    major=${v%%.*}
    minor=${v#*.}
    minor=${minor%%.*}
    (( major > 7 || (major == 7 && minor >= 75) ))
}

EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# s3 METHOD PATH OUT: one SigV4-signed S3 request without a body; the body goes to OUT, the status to stdout.
s3() {
    local method=$1 path=$2 out=$3
    if use_curl_sigv4; then
        # The credentials go through a config on stdin, not the command line (ps shows arguments).
        local user="$ACCESS_KEY:$SECRET_KEY"
        user=${user//\\/\\\\}
        user=${user//\"/\\\"}
        curl -sS --max-time 10 -o "$out" -w '%{http_code}' -X "$method" \
            --aws-sigv4 "aws:amz:$REGION:s3" -H "x-amz-content-sha256: $EMPTY_SHA256" \
            --config - "http://$HOST:$PORT$path" <<<"user = \"$user\""
        return
    fi
    command -v python3 >/dev/null 2>&1 || die "curl $(curl --version | head -n1 | cut -d' ' -f2) lacks --aws-sigv4 and python3 is missing"
    MINIO_S3_KEY="$ACCESS_KEY" MINIO_S3_SECRET="$SECRET_KEY" python3 - "$method" "http://$HOST:$PORT$path" "$out" "$REGION" <<'PY'
import datetime, hashlib, hmac, os, sys, urllib.error, urllib.parse, urllib.request
method, url, out, region = sys.argv[1:5]
key, secret = os.environ["MINIO_S3_KEY"], os.environ["MINIO_S3_SECRET"]
u = urllib.parse.urlsplit(url)
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
payload = hashlib.sha256(b"").hexdigest()
headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
signed = ";".join(sorted(headers))
canonical = "\n".join([method, urllib.parse.quote(u.path or "/"), "",
                       "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
scope = f"{day}/{region}/s3/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (day, region, "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                            f"SignedHeaders={signed}, Signature={signature}")
del headers["host"]
request = urllib.request.Request(url, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        status, body = response.status, response.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
with open(out, "wb") as f:
    f.write(body)
print(status, end="")
PY
}

s3_error() { sed -n -E 's:.*<Code>([^<]*)</Code>.*<Message>([^<]*)</Message>.*:\1\: \2:p' "$1" | head -n1; }

list_buckets() {  # bucket names, one a line
    local body=$BASE/s3-response.xml status
    status=$(s3 GET / "$body") || return 1
    if [[ $status != 200 ]]; then
        echo "minio: error: listing buckets: HTTP $status $(s3_error "$body")" >&2
        if [[ $status == 403 ]]; then
            echo "minio: error: the server runs with the credentials it was started with: 'stop', then 'start'" >&2
        fi
        return 1
    fi
    grep -o '<Name>[^<]*</Name>' "$body" | sed -E 's:</?Name>::g'
    rm -f "$body"
}

ensure_buckets() {
    local have missing=() b body=$BASE/s3-response.xml status
    have=$(list_buckets) || return 1
    for b in "${BUCKETS[@]}"; do
        grep -qx "$b" <<<"$have" || missing+=("$b")
    done
    for b in "${missing[@]}"; do
        status=$(s3 PUT "/$b" "$body") || return 1
        # 409 BucketAlreadyOwnedByYou: created meanwhile, fine.
        if [[ $status != 200 && $status != 409 ]]; then
            echo "minio: error: creating bucket $b: HTTP $status $(s3_error "$body")" >&2
            return 1
        fi
    done
    rm -f "$body"
    have=$(list_buckets) || return 1
    for b in "${BUCKETS[@]}"; do
        grep -qx "$b" <<<"$have" || { echo "minio: error: bucket $b is missing after creating it" >&2; return 1; }
    done
    if (( ${#missing[@]} )); then
        say "created buckets ${missing[*]}; buckets: $(paste -sd' ' <<<"$have")"
    else
        say "buckets: $(paste -sd' ' <<<"$have")"
    fi
}

# --------------------------------------------------------------------------- start / stop / status

cmd_start() {
    command -v curl >/dev/null 2>&1 || die "curl is missing (apt-get install curl)"
    installed || die "minio is not installed: run 'bash setup/local/minio.sh install'"
    (( ${#ACCESS_KEY} >= 3 )) || die "PIPEZONE_MINIO_USER must have at least 3 characters"
    (( ${#SECRET_KEY} >= 8 )) || die "PIPEZONE_MINIO_PASSWORD must have at least 8 characters"
    mkdir -p "$BASE"
    local pid
    if pid=$(server_pid); then
        recorded_ports
        if answers; then
            ensure_buckets || fail_with_log "could not create the buckets"
            say "already running (pid $pid) at $(address)"
            console_line
            return 0
        fi
        say "pid $pid is running but does not answer; stopping it"
        cmd_stop
        PORT="${PIPEZONE_MINIO_PORT:-9000}"
        CONSOLE_PORT="${PIPEZONE_MINIO_CONSOLE_PORT:-9001}"
    fi
    rm -f "$PID_FILE" "$PORTS_FILE"
    local p
    for p in "$PORT" "$CONSOLE_PORT"; do
        require_free_port "$p" "set PIPEZONE_MINIO_PORT / PIPEZONE_MINIO_CONSOLE_PORT"
    done
    [[ $PORT != "$CONSOLE_PORT" ]] || die "PIPEZONE_MINIO_PORT and PIPEZONE_MINIO_CONSOLE_PORT are both $PORT"
    mkdir -p "$DATA" "$BASE/certs"
    local started=$SECONDS
    start_marker "$LOG" "on $HOST:$PORT (console $HOST:$CONSOLE_PORT)"
    # Nothing from the caller's MINIO_* variables or ~/.minio (certificates there would turn TLS on).
    local var
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^MINIO_' || true)
    MINIO_ROOT_USER="$ACCESS_KEY" MINIO_ROOT_PASSWORD="$SECRET_KEY" MINIO_UPDATE=off \
        setsid nohup "$MINIO" server "$DATA" \
        --address "$HOST:$PORT" --console-address "$HOST:$CONSOLE_PORT" --certs-dir "$BASE/certs" \
        </dev/null >>"$LOG" 2>&1 &
    local launcher=$!
    echo "$launcher" >"$PID_FILE"
    echo "$PORT $CONSOLE_PORT" >"$PORTS_FILE"
    await_ready "$started" "$launcher" minio "$PID_FILE" "$PORTS_FILE"
    ensure_buckets || fail_with_log "could not create the buckets"
    say "running (pid $launcher) at $(address), started in $((SECONDS - started)) s"
    console_line
}

cmd_stop() {
    stop_server minio "$PID_FILE" "$PORTS_FILE"
}

cmd_status() {
    local pid=""
    if pid=$(server_pid); then
        recorded_ports >/dev/null
    fi
    if answers; then
        if [[ -n $pid ]]; then
            say "running (pid $pid) at $(address), console http://$HOST:$CONSOLE_PORT"
        else
            say "a server answers at $(address), but not one this checkout started"
        fi
        return 0
    fi
    if [[ -n $pid ]]; then
        say "pid $pid is running but does not answer at http://$HOST:$PORT/minio/health/ready"
    else
        say "not running"
    fi
    return 1
}

run_command "${1:-}" install start stop status
