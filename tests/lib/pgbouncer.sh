# A PgBouncer (Debian's pgbouncer package) in front of a private cluster, for
# tests. Source it after tests/lib/cluster.sh, then:
#   pgbouncer_start DIR CLUSTER [MODE [POOL_SIZE]]   writes DIR/pgbouncer.ini, starts it
#                                                    (MODE: transaction by default, pool 1)
#   pgbouncer_port DIR / pgbouncer_stop DIR
# It listens on a free port on 127.0.0.1, forwards every database to the
# cluster's TCP port as the client's user, trusts everyone (like the test
# clusters), and runs as postgres: PgBouncer refuses to run as root.

pgbouncer_start() {
    local dir=$1 cluster=$2 mode=${3:-transaction} pool=${4:-1} port attempt _
    mkdir -p "$dir"
    echo '"postgres" ""' >"$dir/userlist.txt"
    # a port free a moment ago may be taken by then (as the local end of some
    # connection): then PgBouncer listens on its socket only; try another
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$(cluster_port "$cluster")

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = $mode
default_pool_size = $pool
max_client_conn = 100
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
        echo "$port" >"$dir/port"
        : >"$dir/pgbouncer.log"
        chown -R postgres: "$dir"
        as_postgres pgbouncer -d "$dir/pgbouncer.ini" || { cat "$dir/pgbouncer.log" >&2; return 1; }
        for _ in $(seq 1 100); do
            psql -X -At -h 127.0.0.1 -p "$port" -U postgres -d pgbouncer -c "SHOW VERSION" >/dev/null 2>&1 && return 0
            grep -q "cannot listen on 127.0.0.1" "$dir/pgbouncer.log" && break
            sleep 0.1
        done
        pgbouncer_stop "$dir"
    done
    echo "pgbouncer did not start" >&2
    cat "$dir/pgbouncer.log" >&2
    return 1
}

pgbouncer_port() { cat "$1/port"; }

pgbouncer_stop() {
    local dir=$1
    [ -f "$dir/pgbouncer.pid" ] || return 0
    kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
    local _
    for _ in $(seq 1 50); do
        [ -f "$dir/pgbouncer.pid" ] || return 0
        kill -0 "$(cat "$dir/pgbouncer.pid" 2>/dev/null)" 2>/dev/null || return 0
        sleep 0.1
    done
}

# pgbouncer_admin DIR COMMAND: a command on its admin console (SHOW POOLS...)
pgbouncer_admin() {
    psql -X -At -h 127.0.0.1 -p "$(pgbouncer_port "$1")" -U postgres -d pgbouncer -c "$2"
}
