#!/usr/bin/env bash
# The warm Spark Connect server of the `services` profile: every step of every flow runs through it (one
# long-running Spark driver, an application on the local standalone cluster), started by
# `pipezone spark-server` from metadata/profiles/services.yaml with the lake's credentials read from Vault.
# Needs spark.sh, minio.sh and vault.sh started first (`make services-up` orders them).
#
#   bash setup/local/spark-connect.sh start    # start, wait until it runs a query, warm it up; no-op if running
#   bash setup/local/spark-connect.sh stop     # TERM its process group, KILL after 30 s
#   bash setup/local/spark-connect.sh status   # exit 0 when it answers a query
#
# Env: PIPEZONE_CONNECT_PROFILE (services): the profile whose spark.connect_url it serves; VAULT_ADDR and
# VAULT_TOKEN when set, else vault.sh's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROFILE="${PIPEZONE_CONNECT_PROFILE:-services}"
PIPEZONE="$ROOT/.venv/bin/pipezone"

NAME=spark-connect
LOGS=()
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

server() {  # server ACTION: `pipezone spark-server ACTION` on the profile, from the repo's metadata
    [[ -x $PIPEZONE ]] || die "no $PIPEZONE: run 'make install'"
    if [[ -z ${VAULT_TOKEN:-} ]]; then
        eval "$(bash "$ROOT/setup/local/vault.sh" env)"
    fi
    # the prefix comes from pipezone's own line ("spark-server: ...")
    PIPEZONE_HOME="$ROOT" PIPEZONE_METADATA="$ROOT/metadata" PIPEZONE_PROFILE="$PROFILE" \
        VAULT_ADDR="$VAULT_ADDR" VAULT_TOKEN="$VAULT_TOKEN" "$PIPEZONE" spark-server "$1" | sed "s/^spark-server:/$NAME:/"
    return "${PIPESTATUS[0]}"
}

cmd_start() {
    local started=$SECONDS
    server start
    say "start took $((SECONDS - started)) s (profile $PROFILE)"
}

cmd_stop() { server stop; }

cmd_status() { server status; }

run_command "${1:-}" start stop status
