#!/usr/bin/env bash
# Installs what building and testing pg_followup needs, when it is missing:
# Debian packages (PostgreSQL 15 server and headers, clang for bindgen, sudo,
# python3-venv for the soak's venv),
# cargo-pgrx 0.18.0, and the project's pgrx home (pgrx-config/config.toml).
# Safe to run again: it only installs what is absent. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo pgbouncer openssl curl
          python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
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
