#!/usr/bin/env bash
# The soak (README, "Soak"): pg_followup whole, under load and faults drawn
# from a seed, for a bounded time; then the checker reads what happened.
#
#   tests/soak/run.sh [--duration SECONDS] [--seed N]
#
#   --duration  default 180 (the short mode, part of tests/run.sh); 600 or more
#               also runs a synchronous streaming standby that faults promote
#               (the long mode: --duration 3600)
#   --seed      default: a new one, printed; the same seed replays the same
#               operations and faults at the same offsets
#   --standby   the long mode's standby (and at least one promotion) in a
#               shorter soak
#   SOAK_OUT    where the history, the final database and the logs go
#               (default target/soak/seed-N)
#   KEEP_CLUSTERS=1   keep the clusters' directories afterwards
#
# Uses the pg_followup installed in the system PostgreSQL 15 (it installs
# nothing there), private clusters on free ports, the notifier built from this
# tree (cargo build -p followup-notifier) and a Python venv of its own
# (tests/soak/.venv, psycopg from tests/soak/requirements.txt).
# The last line is `soak: <deliveries> deliveries, <faults> faults,
# <violations> violations`; the exit status is non-zero on any violation.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
duration=180
seed=""
standby=()
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --standby) standby=(--standby); shift ;;
        *) echo "usage: tests/soak/run.sh [--duration SECONDS] [--seed N] [--standby]" >&2; exit 2 ;;
    esac
done
[ -n "$seed" ] || seed=$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 ))
if [ "${duration%.*}" -ge 600 ]; then standby=(--standby); fi

# clusters of its own, whoever else has clusters under another CLUSTER_ROOT
CLUSTER_ROOT=$(mktemp -d /tmp/pg_followup_soak.XXXXXX)
source "$REPO/tests/lib/cluster.sh"
trap cluster_cleanup_all EXIT

venv="$REPO/tests/soak/.venv"
if ! "$venv/bin/python" -c 'import psycopg' 2>/dev/null; then
    python3 -c 'import ensurepip' 2>/dev/null || "$REPO/tests/setup.sh"   # python3-venv
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$REPO/tests/soak/requirements.txt"
fi

(cd "$REPO" && cargo build --quiet -p followup-notifier)
target_dir=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

out=${SOAK_OUT:-$REPO/target/soak/seed-$seed}
rm -rf "$out" && mkdir -p "$out"
if ! "$venv/bin/python" "$REPO/tests/soak/soak.py" --duration "$duration" --seed "$seed" --out "$out" \
        --notifier "$target_dir/debug/followup-notifier" "${standby[@]}"; then
    echo "soak: the harness failed (seed $seed); see $out"
    exit 2
fi
for d in "$CLUSTER_ROOT"/*/; do
    [ -f "$d/server.log" ] && cp "$d/server.log" "$out/$(basename "$d").server.log"
done
cp "$CLUSTER_ROOT"/*.earlier-server.log "$out/" 2>/dev/null || true
echo "soak: replay with tests/soak/run.sh --duration $duration --seed $seed; history in $out"
python3 "$REPO/tests/soak/checker.py" "$out"
