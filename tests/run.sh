#!/usr/bin/env bash
# Runs every pg_followup test and exits non-zero if any fails:
#   1. #[pg_test] Rust tests (pgrx's own test cluster)
#   2. pg_regress suites          tests/pg_regress/sql/*.sql      vs expected/*.out
#   3. isolation specs            tests/isolation/specs/*.spec    vs expected/*.out
#   4. integration scripts        tests/integration/*.sh          (private clusters)
# Suites 2-4 run against private PostgreSQL 15 clusters (free port, socket in a
# temp dir, shared_preload_libraries = 'pg_followup') that this script starts
# and removes. Installs missing prerequisites first (tests/setup.sh).
#
#   tests/run.sh                  everything
#   tests/run.sh regress          only some suites: pgtest regress isolation integration
#   TESTS="tracking" tests/run.sh regress     only some pg_regress / isolation files
#   KEEP_CLUSTERS=1               keep the clusters' directories (logs) afterwards
#   SKIP_INSTALL=1                use the pg_followup already installed in the system
#                                 PostgreSQL (no build), e.g. while working on the notifier
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
tests/setup.sh || exit 1
export PGRX_HOME="$REPO/pgrx-config"
PGXS=$(dirname "$(pg_config --pgxs)")/..
PG_REGRESS="$PGXS/test/regress/pg_regress"
PG_ISOLATION_REGRESS="$PGXS/test/isolation/pg_isolation_regress"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(pgtest regress isolation integration)
wants() { local s; for s in "${suites[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

failures=()
section() { printf '\n==== %s ====\n' "$*"; }

source tests/lib/cluster.sh
trap cluster_cleanup_all EXIT
RESULTS="$CLUSTER_ROOT/results"
mkdir -p "$RESULTS" && chmod 777 "$RESULTS"

if wants pgtest; then
    section "pg_test (Rust unit and SQL tests inside PostgreSQL)"
    mkdir -p "$CLUSTER_ROOT/pgrx-data" && chown postgres: "$CLUSTER_ROOT/pgrx-data"
    cargo pgrx test pg15 --runas postgres --pgdata "$CLUSTER_ROOT/pgrx-data" || failures+=("pg_test")
fi

if wants regress || wants isolation || wants integration; then
    section "install the extension into the system PostgreSQL 15"
    if [ -z "${SKIP_INSTALL:-}" ]; then
        tests/lib/install.sh || { echo "install failed"; exit 1; }
    fi
    cluster_init main && cluster_start main || exit 1
    export PGHOST=$(cluster_host main) PGPORT=$(cluster_port main) PGUSER=postgres
fi

# Test names: every file of the suite, or the ones named in $TESTS.
names_in() {
    local dir=$1 ext=$2 f
    if [ -n "${TESTS:-}" ]; then
        for f in $TESTS; do [ -f "$dir/$f.$ext" ] && echo "$f"; done
    else
        for f in "$dir"/*."$ext"; do [ -e "$f" ] && basename "$f" ".$ext"; done
    fi
}

if wants regress; then
    section "pg_regress"
    mapfile -t tests < <(names_in tests/pg_regress/sql sql)
    if [ ${#tests[@]} -gt 0 ]; then
        "$PG_REGRESS" --host="$PGHOST" --port="$PGPORT" --user=postgres \
            --inputdir=tests/pg_regress --outputdir="$RESULTS/regress" --dbname=followup_regress \
            "${tests[@]}" || { failures+=("pg_regress"); cat "$RESULTS/regress/regression.diffs" 2>/dev/null; }
    fi
fi

if wants isolation; then
    section "isolation"
    mapfile -t specs < <(names_in tests/isolation/specs spec)
    if [ ${#specs[@]} -gt 0 ]; then
        "$PG_ISOLATION_REGRESS" --host="$PGHOST" --port="$PGPORT" --user=postgres \
            --inputdir=tests/isolation --outputdir="$RESULTS/isolation" --dbname=followup_isolation \
            "${specs[@]}" || { failures+=("isolation"); cat "$RESULTS/isolation/regression.diffs" 2>/dev/null; }
    fi
fi

if wants integration; then
    section "integration scripts"
    for script in tests/integration/*.sh; do
        [ -e "$script" ] || continue
        name=$(basename "$script" .sh)
        if [ -n "${TESTS:-}" ] && [[ " $TESTS " != *" $name "* ]]; then continue; fi
        printf -- '--- %s\n' "$name"
        if bash "$script" >"$RESULTS/$name.log" 2>&1; then
            echo "ok"
        else
            echo "FAILED; its output:"
            tail -n 60 "$RESULTS/$name.log"
            failures+=("integration/$name")
        fi
    done
fi

section "summary"
if [ ${#failures[@]} -gt 0 ]; then
    echo "FAILED: ${failures[*]}"
    exit 1
fi
echo "all tests passed"
