#!/usr/bin/env bash
# Headless Chromium for the tests that open generated HTML (the quality step's Data Docs), from Debian's
# `chromium` package. Not a server: nothing to start or stop.
#
#   bash setup/local/chromium.sh install   # apt-get install chromium, only when the chromium binary is missing
#   bash setup/local/chromium.sh path      # the binary's path (exit 1 when it is not installed)
#   bash setup/local/chromium.sh status    # exit 0 when installed, with its version
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

NAME=chromium
LOGS=()
# shellcheck source=setup/local/lib.sh source-path=SCRIPTDIR/../..
source "$ROOT/setup/local/lib.sh"

binary() { command -v chromium 2>/dev/null; }

# "Chromium 139.0.7258.154 built on Debian GNU/Linux 12 (bookworm)"; Debian's /usr/bin/chromium is a
# wrapper script, which runs the browser's own --version (no display needed).
version() { chromium --version 2>/dev/null | head -n1; }

# --------------------------------------------------------------------------- install / path / status

cmd_install() {
    if binary >/dev/null; then
        say "installed ($(version), $(binary))"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "chromium is missing; run 'bash setup/local/chromium.sh install' as root (apt-get)"
    local started=$SECONDS
    apt_install chromium chromium
    binary >/dev/null || die "apt-get finished but the chromium binary is still missing"
    say "installed ($(version), $(binary)) in $((SECONDS - started)) s"
}

cmd_path() {
    binary || die "not installed: run 'bash setup/local/chromium.sh install'"
}

cmd_status() {
    if binary >/dev/null; then
        say "installed ($(version), $(binary))"
        return 0
    fi
    say "not installed"
    return 1
}

run_command "${1:-}" install path status
