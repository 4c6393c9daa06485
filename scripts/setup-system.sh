#!/usr/bin/env bash
# Install the Debian packages sagac needs outside Python, when they are missing:
#   graphviz  `dot`, for `sagac diagram --format svg|html` and the run report
#   chromium  headless browser, for the report's rendering test
#   postgresql  `initdb` and `pg_ctl`, for the PostgreSQL store's tests (a throw-away server)
# Idempotent and quiet: installed packages are left alone, and `apt-get update` runs at most
# once, only when something is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

PACKAGES=(graphviz chromium postgresql)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: missing ${missing[*]}, and apt-get is not available:" \
        "install them with your system's package manager" >&2
    exit 69
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup-system: missing ${missing[*]}: run as root: apt-get install ${missing[*]}" >&2
        exit 77
    fi
fi

echo "setup-system: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# apt's output is kept and shown only when something goes wrong.
if ! { "${SUDO[@]}" apt-get update -qq \
        && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-system: could not install ${missing[*]}" >&2
    exit 1
fi
