#!/usr/bin/env bash
# Installs what building and testing pg_followup needs, when it is missing:
# Debian packages (PostgreSQL 15 server and headers, clang for bindgen, sudo,
# python3-venv for the soak's venv; chromium and its driver for the console's
# browser tests), cargo-pgrx
# 0.18.0, the project's pgrx home (pgrx-config/config.toml), and a Python
# venv with Selenium (target/browser-venv) for the browser tests.
# Safe to run again: it only installs what is absent. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo pgbouncer openssl curl
          python3-venv)
# the browser and its driver come from the same Debian build, so they always match
browser=(chromium chromium-driver)
missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}
updated=""
install() {
    echo "setup: installing $*"
    [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
mapfile -t absent < <(missing "${packages[@]}")
[ ${#absent[@]} -eq 0 ] || install "${absent[@]}"
mapfile -t absent < <(missing "${browser[@]}")
[ ${#absent[@]} -eq 0 ] || install --no-install-recommends "${absent[@]}"

# Selenium for the browser tests, with its driver download off (SE_OFFLINE):
# it drives /usr/bin/chromedriver
VENV=target/browser-venv
if ! "$VENV/bin/python" -c 'import selenium' 2>/dev/null; then
    echo "setup: creating $VENV with Selenium"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'selenium>=4.20,<5'
fi

if ! cargo pgrx --version 2>/dev/null | grep -q ' 0\.18\.0'; then
    echo "setup: installing cargo-pgrx 0.18.0 (takes a few minutes)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi

export PGRX_HOME="$PWD/pgrx-config"
if [ ! -f "$PGRX_HOME/config.toml" ] || ! grep -q '^pg15' "$PGRX_HOME/config.toml"; then
    mkdir -p "$PGRX_HOME"
    printf '[configs]\npg15 = "/usr/bin/pg_config"\n' >"$PGRX_HOME/config.toml"
fi
