# Helpers for the console's integration scripts (tests/integration/console_*.sh):
# a private cluster that checks passwords (SCRAM over TCP, as in production),
# the sample app, console/roles.sql, three people, and the real
# followup-console binary. Source tests/lib/integration.sh first, then this.
#
#   console_setup NAME          work directory $WORK, cluster NAME (password
#                               checks over TCP; the test's own psql uses the
#                               socket as postgres), database $DB with the
#                               sample app registered, seeded and run as of
#                               $AS_OF; roles.sql; people:
#                                 vic (followup_viewer), ann (followup_support),
#                                 ada (followup_admin); password: $PASSWORD
#                               builds the console ($CONSOLE)
#   start_console NAME [FLAGS...]   runs it (on $CONSOLE_DB, default: $DB) on 127.0.0.1:<free port>, logging to
#                               $WORK/NAME.log; waits until it serves; sets
#                               CONSOLE_PID and BASE (http://127.0.0.1:PORT)
#   stop_console [PID]          SIGTERM, wait
#   cleanup_hook CMD            run CMD at exit

PASSWORD='correct-horse-battery-staple'
CLEANUP_HOOKS=()

console_cleanup() {
    local pid hook
    # this shell's background jobs still running (consoles, helpers): not ids
    # remembered from before, which may belong to another process by now (ids
    # wrap quickly on a busy machine)
    for pid in $(jobs -p); do kill -TERM "$pid" 2>/dev/null; done
    for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook" >/dev/null 2>&1 || true; done
    return 0
}
cleanup_hook() { CLEANUP_HOOKS+=("$1"); }

console_setup() {
    local name=$1
    WORK="$CLUSTER_ROOT/$name"
    rm -rf "$WORK" && mkdir -p "$WORK" && chmod 755 "$WORK"
    trap console_cleanup EXIT
    trap "exit 1" INT TERM
    workspace_binary CONSOLE followup-console
    cluster_init "$name" "password_encryption = 'scram-sha-256'" >/dev/null
    cleanup_hook "cluster_stop $name immediate"
    local data
    data="$(cluster_dir "$name")/data"
    # the test's own psql: postgres over the socket; everyone over TCP: SCRAM
    printf 'local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$data/pg_hba.conf"
    cluster_start "$name" || abort "cluster $name does not start"
    export PGHOST=$(cluster_host "$name") PGPORT=$(cluster_port "$name") PGUSER=postgres
    DB_PORT=$PGPORT
    new_db console_app
    register_app
    seed 200
    q "SELECT status FROM followup.run_now('$AS_OF')" >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$REPO/console/roles.sql" >/dev/null || abort "roles.sql"
    person vic followup_viewer
    person ann followup_support
    person ada followup_admin
}

# person NAME GROUP: a login role in GROUP with $PASSWORD (the one statement
# the README gives).
person() {
    q "DROP ROLE IF EXISTS $1" >/dev/null 2>&1 || true
    q "CREATE ROLE $1 LOGIN PASSWORD '$PASSWORD' IN ROLE $2" >/dev/null
}

# start_console NAME [FLAGS...]
start_console() {
    local name=$1; shift
    "$CONSOLE" --database-url "${CONSOLE_DB:-host=127.0.0.1 port=$DB_PORT dbname=$DB sslmode=disable}" \
        --listen 127.0.0.1:0 "$@" 2>>"$WORK/$name.log" &
    CONSOLE_PID=$!
    wait_until "console $name serves" 30 grep -qs "serving the console on" "$WORK/$name.log"
    BASE=$(sed -n 's|.*serving the console on \(https\{0,1\}://[0-9.:]*\).*|\1|p' "$WORK/$name.log" | tail -n 1)
}

stop_console() {
    local pid=${1:-$CONSOLE_PID}
    kill -TERM "$pid" 2>/dev/null
    { wait "$pid" || true; } 2>/dev/null
}
