#!/usr/bin/env bash
# Private PostgreSQL 15 clusters for the test suites, the demo and the benchmark.
# Source this file, then:
#   cluster_init NAME [extra postgresql.conf lines...]   -> sets up $CLUSTER_ROOT/NAME
#   cluster_start NAME / cluster_stop NAME [mode] / cluster_psql NAME [psql args...]
#   cluster_up NAME [extra lines...]   -> init, start, and PG* variables pointing at it
# Each cluster listens on a free TCP port on 127.0.0.1 and on a socket in its
# own directory, runs as the OS user postgres, preloads pg_followup, and allows
# logical and streaming replication so fault tests can build standbys and
# subscribers.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
: "${CLUSTER_ROOT:=$(mktemp -d /tmp/pg_followup.XXXXXX)}"
chmod 755 "$CLUSTER_ROOT"
export CLUSTER_ROOT

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres -- "$@"; fi
}

free_port() {
    local port
    for port in $(shuf -i 20000-60000 -n 200); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

cluster_dir() { echo "$CLUSTER_ROOT/$1"; }
cluster_port() { cat "$(cluster_dir "$1")/port"; }
cluster_host() { cluster_dir "$1"; }

# cluster_init NAME [conf lines...]: initdb + configuration (not started).
cluster_init() {
    local name=$1; shift
    local dir port
    dir=$(cluster_dir "$name")
    port=$(free_port)
    # a leftover of an earlier run under the same root: start afresh
    if [ -d "$dir/data" ]; then
        cluster_stop "$name" immediate
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    chown postgres: "$dir"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    echo "$port" >"$dir/port"
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'pg_followup'"
        echo "wal_level = logical"
        echo "max_wal_senders = 10"
        echo "max_replication_slots = 10"
        echo "max_worker_processes = 32"
        echo "hot_standby = on"
        echo "fsync = off"
        echo "log_line_prefix = '%m [%p] %q%a '"
        echo "lc_messages = 'C'"
        echo "timezone = 'UTC'"
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
    echo "local all all trust" >"$dir/data/pg_hba.conf"
    echo "host all all 127.0.0.1/32 trust" >>"$dir/data/pg_hba.conf"
    echo "local replication all trust" >>"$dir/data/pg_hba.conf"
    echo "host replication all 127.0.0.1/32 trust" >>"$dir/data/pg_hba.conf"
}

cluster_start() {
    local dir
    dir=$(cluster_dir "$1")
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -n 30 "$dir/server.log" >&2; return 1; }
}

# cluster_stop NAME [fast|immediate]
cluster_stop() {
    local dir
    dir=$(cluster_dir "$1")
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || true
}

# cluster_up NAME [conf lines...]: cluster_init and cluster_start, then points
# libpq's environment at it (PGHOST, PGPORT, PGUSER=postgres,
# PGDATABASE=postgres), so that plain psql and the programs a benchmark starts
# talk to it.
cluster_up() {
    local name=$1
    cluster_init "$@" && cluster_start "$name" || return 1
    PGHOST=$(cluster_host "$name") PGPORT=$(cluster_port "$name")
    export PGHOST PGPORT PGUSER=postgres PGDATABASE=postgres
}

cluster_psql() {
    local name=$1; shift
    psql -X -v ON_ERROR_STOP=1 -h "$(cluster_host "$name")" -p "$(cluster_port "$name")" -U postgres "$@"
}

# Stops every cluster under CLUSTER_ROOT and removes it (use in an EXIT trap).
cluster_cleanup_all() {
    local d
    for d in "$CLUSTER_ROOT"/*/; do
        [ -d "$d/data" ] && cluster_stop "$(basename "$d")" immediate
    done
    if [ -z "${KEEP_CLUSTERS:-}" ]; then rm -rf "$CLUSTER_ROOT"; fi
}
