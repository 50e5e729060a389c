#!/usr/bin/env bash
# The soak's hands on its private clusters (tests/lib/cluster.sh under
# $CLUSTER_ROOT), for tests/soak/soak.py:
#   node.sh init NAME [conf lines...]    initdb, configured (not started)
#   node.sh start NAME | stop NAME MODE  pg_ctl start / stop -m MODE (fast, immediate)
#   node.sh standby NAME PRIMARY         NAME anew as a streaming standby of PRIMARY
#                                        (pg_basebackup -R), keeping NAME's port, started
#   node.sh promote NAME                 pg_ctl promote, waiting until it is done
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

cmd=$1 name=$2
shift 2
case "$cmd" in
    init) cluster_init "$name" "$@" ;;
    start) cluster_start "$name" ;;
    stop) cluster_stop "$name" "$1" ;;
    standby)
        primary=$1
        dir=$(cluster_dir "$name")
        port=$(cat "$dir/port" 2>/dev/null || free_port)
        cluster_stop "$name" immediate
        # the node's server log so far is kept: the soak reads every log at the end
        if [ -f "$dir/server.log" ]; then cat "$dir/server.log" >>"$CLUSTER_ROOT/$name.earlier-server.log"; fi
        rm -rf "$dir" && mkdir -p "$dir" && chown postgres: "$dir"
        echo "$port" >"$dir/port"
        # application_name: how the primary's synchronous_standby_names sees it
        as_postgres "$PG_BIN/pg_basebackup" -h "$(cluster_host "$primary")" -p "$(cluster_port "$primary")" \
            -U postgres -D "$dir/data" -R -X stream -c fast -d "application_name=$name" >"$dir/basebackup.log" 2>&1 \
            || { cat "$dir/basebackup.log" >&2; exit 1; }
        printf "port = %s\nunix_socket_directories = '%s'\n" "$port" "$dir" >>"$dir/data/postgresql.conf"
        cluster_start "$name"
        ;;
    promote) as_postgres "$PG_BIN/pg_ctl" -D "$(cluster_dir "$name")/data" -w -t 60 promote >/dev/null ;;
    *) echo "node.sh: unknown command $cmd" >&2; exit 2 ;;
esac
