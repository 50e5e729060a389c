#!/usr/bin/env bash
# pg_followup demo: builds and installs the extension, starts a private
# PostgreSQL 15 cluster with the worker preloaded, loads a sample
# peer-mentoring app with 10,000 assignments, registers its tables, logs
# contacts the four ways the app registers them and shows last_contact_date
# following, runs the daily reminder run and prints the run log, health and
# outbox. Installs missing prerequisites first (tests/setup.sh).
#
# The cluster keeps running afterwards so you can look around; the last lines
# printed say how to connect and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
tests/setup.sh
export PGRX_HOME="$REPO/pgrx-config"

echo "==> building and installing pg_followup (release build)"
tests/lib/install.sh --release

export CLUSTER_ROOT=${DEMO_DIR:-/tmp/pg_followup-demo}
if [ -f "$CLUSTER_ROOT/demo/data/postmaster.pid" ]; then
    source tests/lib/cluster.sh
    cluster_stop demo immediate
fi
rm -rf "$CLUSTER_ROOT"
mkdir -p "$CLUSTER_ROOT"
source tests/lib/cluster.sh
echo "==> starting a private cluster in $CLUSTER_ROOT (shared_preload_libraries = 'pg_followup')"
cluster_init demo "followup.database = 'demo'" "followup.timezone = 'UTC'"
cluster_start demo
export PGHOST=$(cluster_host demo) PGPORT=$(cluster_port demo) PGUSER=postgres
createdb demo

psql -X -q -v ON_ERROR_STOP=1 -d demo -f "$REPO/demo/demo.sql"

cat <<EOT

==> the demo cluster is still running:
    psql -h $PGHOST -p $PGPORT -U postgres demo
    stop it with: sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl -D $CLUSTER_ROOT/demo/data stop
EOT
