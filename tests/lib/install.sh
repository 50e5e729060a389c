#!/usr/bin/env bash
# Builds pg_followup and installs it into the system PostgreSQL 15.
#   tests/lib/install.sh            debug build (tests)
#   tests/lib/install.sh --release  optimized build (demo, benchmark)
# Every file is written next to its destination and renamed into place, so
# servers that have the previous library loaded keep running (overwriting a
# loaded .so in place crashes them).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PGRX_HOME="$PWD/pgrx-config"
profile=(--debug)
[ "${1:-}" = "--release" ] && profile=()
out=$(mktemp -d /tmp/pg_followup-package.XXXXXX)
trap 'rm -rf "$out"' EXIT
cargo pgrx package "${profile[@]}" --pg-config /usr/bin/pg_config --out-dir "$out" >"$out.log" 2>&1 \
    || { tail -n 40 "$out.log"; rm -f "$out.log"; exit 1; }
rm -f "$out.log"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Install scripts of earlier releases (sql/released/pg_followup--X.Y.Z.sql),
# kept so that old versions can be created and upgraded from; pgrx ships only
# the current version's script and the upgrade scripts (sql/pg_followup--A--B.sql).
sharedir=$(pg_config --sharedir)
for frozen in sql/released/pg_followup--*.sql; do
    install -D -m 0644 "$frozen" "$out$sharedir/extension/$(basename "$frozen")"
done
(cd "$out" && find . -type f) | while read -r file; do
    dest="/${file#./}"
    $SUDO install -D -m 0644 "$out/$file" "$dest.new.$$"
    $SUDO mv -f "$dest.new.$$" "$dest"
done
