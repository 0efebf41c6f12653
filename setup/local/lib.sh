# shellcheck shell=bash
# Shared by setup/local/*.sh (sourced, not run): messages, pid files, ports and the start/stop waits that
# every local server needs. The sourcing script sets NAME (message prefix), LOGS (array of its log files),
# WAIT_SECONDS and HOST first, and defines `answers` (exit 0 when its server is ready) for `await_ready`;
# `reuse_running` and `report_status` also use its PORT, `server_pid`, `running_port`, `provision`, `address`
# and `cmd_stop`.

say() { echo "$NAME: $*"; }
die() { echo "$NAME: error: $*" >&2; exit 1; }

# log_tail [FILE...]: the last 30 lines of each log's latest run (after its last `---- ` start marker).
log_tail() {
    local file
    (( $# )) || set -- "${LOGS[@]}"
    for file in "$@"; do
        if [[ -s "$file" ]]; then
            echo "$NAME: last 30 lines of $file (latest start):" >&2
            awk '/^---- / { n = 0 } { line[n++] = $0 } END { for (i = (n > 30 ? n - 30 : 0); i < n; i++) print substr(line[i], 1, 400) }' "$file" >&2
        fi
    done
}

# fail_with_log MESSAGE [FILE...]: the error, then the log tails; exits 1.
fail_with_log() {
    echo "$NAME: error: $1" >&2
    shift
    log_tail "$@"
    exit 1
}

# start_marker LOG WHAT: a `---- <time> start ...` line, so log_tail shows only the latest run.
start_marker() { echo "---- $(date -u '+%Y-%m-%dT%H:%M:%SZ') start $2" >>"$1"; }

# pid_in FILE [PATTERN]: the live pid recorded in FILE; with PATTERN its command line must match too
# (a recycled pid is then not mistaken for our server).
pid_in() {
    local file=$1 pattern=${2:-} pid
    [[ -f "$file" ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -n $pattern ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    fi
    echo "$pid"
}

port_taken() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

port_owner() {  # " (pid N, name)" of the process listening on a port, when ss can tell
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n -E 's/.*users:\(\("([^"]+)",pid=([0-9]+).*/ (pid \2, \1)/p' | head -n1
}

# require_free_port PORT HINT: die naming the owner when another process listens on PORT.
require_free_port() {
    if port_taken "$1"; then
        die "port $1 on $HOST is taken by another process$(port_owner "$1") ($2)"
    fi
}

# await_ready STARTED PID LABEL [FILE...]: poll `answers` until the server started at STARTED (SECONDS) is
# ready. If PID exits, or WAIT_SECONDS pass, remove FILEs (its pid/state files) and fail with the log tail.
await_ready() {
    local started=$1 pid=$2 label=$3
    shift 3
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$@"
            fail_with_log "$label exited during start-up"
        fi
        if (( SECONDS - started >= WAIT_SECONDS )); then
            kill "$pid" 2>/dev/null || true
            rm -f "$@"
            fail_with_log "$label did not answer within ${WAIT_SECONDS} s"
        fi
        sleep 0.3
    done
}

# await_exit PID LABEL: wait up to WAIT_SECONDS for PID to end after a stop request, then KILL it.
# Returns 1 when it had to be killed.
await_exit() {
    local pid=$1 label=$2 waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= WAIT_SECONDS * 2 )); then
            say "$label (pid $pid) did not stop within ${WAIT_SECONDS} s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
}

# stop_server LABEL FILE...: ask the server that the script's `server_pid` names to stop (the script's
# `stop_request PID` if it has one, else TERM), wait for it, and remove FILEs (its pid and state files).
stop_server() {
    local label=$1 pid ended=0
    shift
    if ! pid=$(server_pid); then
        rm -f "$@"
        say "not running"
        return 0
    fi
    if declare -F stop_request >/dev/null; then
        stop_request "$pid"
    else
        kill -TERM "$pid" 2>/dev/null || true
    fi
    await_exit "$pid" "$label" || ended=$?
    rm -f "$@"
    (( ended == 0 )) || fail_with_log "$label (pid $pid) did not stop in time and was killed"
    say "stopped"
}

# reuse_running HINT: 0 when the script's server (`server_pid`, `answers`) is up: use the port it runs on
# (with a warning when PORT asks another), run the script's `provision` again (it fails with HINT) and say
# where it runs (`address`). Otherwise stop a server that runs but does not answer, and return 1.
reuse_running() {
    local running pid
    if server_pid >/dev/null && answers; then
        running=$(running_port)
        if [[ $running != "$PORT" ]]; then
            say "warning: running on port $running, not $PORT: run 'stop' first to change the port"
            PORT=$running
        fi
        provision || fail_with_log "$1"
        say "already running at $(address)"
        return 0
    fi
    if pid=$(server_pid); then
        say "pid $pid is running but does not answer; stopping it"
        cmd_stop
    fi
    return 1
}

# report_status: exit 0 and say where the script's server runs (`running_port`, `address`) when it answers.
report_status() {
    if answers; then
        PORT=$(running_port)
        say "running at $(address)"
        return 0
    fi
    say "not running"
    return 1
}

# apt_install PROBE PACKAGE...: apt-get install the PACKAGEs (as root) without starting their system
# services (a policy-rc.d that exits 101, removed at exit); `apt-get update` only when the package lists
# don't know PROBE, or an install from stale lists fails.
apt_install() {
    local probe=$1 policy=/usr/sbin/policy-rc.d
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
    shift
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    if ! apt-cache policy "$probe" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        "${apt[@]}" update
    fi
    if ! "${apt[@]}" install --no-install-recommends "$@"; then
        say "install failed; refreshing the package lists and retrying"
        "${apt[@]}" update
        "${apt[@]}" install --no-install-recommends "$@"
    fi
}

# run_command ARG COMMAND...: cmd_ARG when ARG is one of the COMMANDs, else the usage line and exit 2.
run_command() {
    local arg=${1:-} command
    shift
    for command in "$@"; do
        if [[ $arg == "$command" ]]; then
            "cmd_$command"
            return
        fi
    done
    local IFS='|'
    echo "usage: $0 $*" >&2
    exit 2
}
