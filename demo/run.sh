#!/usr/bin/env bash
# pg_followup demo: builds and installs the extension, starts a private
# PostgreSQL 15 cluster with the worker preloaded, loads a sample
# peer-mentoring app with 10,000 assignments, registers its tables, logs
# contacts the four ways the app registers them and shows last_contact_date
# following, runs the daily reminder run and prints the run log, health and
# outbox. Then it starts the web console on loopback (console/roles.sql's
# groups, a demo login for a support person and one for an admin) and prints
# its URL. Installs missing prerequisites first (tests/setup.sh).
#
# The cluster and the console keep running afterwards so you can look around;
# the last lines printed say how to connect and how to stop them.
#   SKIP_INSTALL=1 ./demo/run.sh     use the pg_followup already installed
#   CONSOLE_PORT=8080 (default)      the console's port (a free one if taken)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
tests/setup.sh
export PGRX_HOME="$REPO/pgrx-config"

if [ -z "${SKIP_INSTALL:-}" ]; then
    echo "==> building and installing pg_followup (release build)"
    tests/lib/install.sh --release
fi

export CLUSTER_ROOT=${DEMO_DIR:-/tmp/pg_followup-demo}
if [ -f "$CLUSTER_ROOT/console.pid" ]; then
    # the previous demo's console, if that id is still one (ids get reused)
    pid=$(cat "$CLUSTER_ROOT/console.pid")
    if ps -o args= -p "$pid" 2>/dev/null | grep -q followup-console; then kill "$pid" 2>/dev/null || true; fi
fi
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

echo "==> the web console: console/roles.sql, two demo logins, passwords checked (SCRAM over TCP)"
# the demo's own psql keeps the socket (trust); everyone else logs in with a password
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$(cluster_dir demo)/data/pg_hba.conf"
psql -X -q -d demo -c "SELECT pg_reload_conf()" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d demo -f "$REPO/console/roles.sql" >/dev/null
SUPPORT_PASSWORD=$(openssl rand -hex 8) ADMIN_PASSWORD=$(openssl rand -hex 8)
psql -X -q -v ON_ERROR_STOP=1 -d demo <<SQL >/dev/null
DROP ROLE IF EXISTS demo_support; DROP ROLE IF EXISTS demo_admin;
CREATE ROLE demo_support LOGIN PASSWORD '$SUPPORT_PASSWORD' IN ROLE followup_support;
CREATE ROLE demo_admin LOGIN PASSWORD '$ADMIN_PASSWORD' IN ROLE followup_admin;
SQL
echo "==> building the console (release, without LTO: quicker)"
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo build --quiet --release -p followup-console
CONSOLE=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/followup-console
CONSOLE_PORT=${CONSOLE_PORT:-8080}
(exec 3<>"/dev/tcp/127.0.0.1/$CONSOLE_PORT") 2>/dev/null && CONSOLE_PORT=$(free_port)
nohup "$CONSOLE" --database-url "host=127.0.0.1 port=$PGPORT dbname=demo sslmode=disable" \
    --listen "127.0.0.1:$CONSOLE_PORT" >"$CLUSTER_ROOT/console.log" 2>&1 &
echo $! >"$CLUSTER_ROOT/console.pid"
for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$CONSOLE_PORT/healthz" && break
    sleep 0.1
done

cat <<EOT

==> the demo cluster is still running:
    psql -h $PGHOST -p $PGPORT -U postgres demo
    stop it with: sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl -D $CLUSTER_ROOT/demo/data stop

==> the console is running: http://127.0.0.1:$CONSOLE_PORT/
    support (correct, snooze, explain):   demo_support / $SUPPORT_PASSWORD
    admin (everything):                   demo_admin / $ADMIN_PASSWORD
    a person of your own:  CREATE ROLE ann LOGIN PASSWORD '...' IN ROLE followup_support;
    its log: $CLUSTER_ROOT/console.log; stop it with: kill \$(cat $CLUSTER_ROOT/console.pid)
EOT
