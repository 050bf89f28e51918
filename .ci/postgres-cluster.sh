#!/usr/bin/env bash
# Throwaway PostgreSQL for tests and benchmarks: a primary on PORT and a streaming replica on
# PORT+1, both on loopback, data under DIR. Prints the two URLs.
#   .ci/postgres-cluster.sh start DIR PORT      .ci/postgres-cluster.sh stop DIR
set -euo pipefail
cmd=$1; dir=$2; port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    runuser -u postgres -- test -w "$dir" || { echo "the postgres user cannot reach $dir (a private parent folder?)" >&2; exit 1; }
  fi
  if [ ! -f "$dir/primary/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/primary" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
wal_level = replica
max_wal_senders = 4
fsync = on
shared_buffers = 256MB
CONF
    echo "host replication postgres 127.0.0.1/32 trust" >> "$dir/primary/pg_hba.conf"
  fi
  as_pg "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
  if [ ! -f "$dir/replica/PG_VERSION" ]; then
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/replica" -R -X stream >/dev/null
    sed -i "s/^port = .*/port = $((port + 1))/" "$dir/replica/postgresql.conf"
    echo "hot_standby_feedback = on" >> "$dir/replica/postgresql.conf"
  fi
  as_pg "$bin/pg_ctl" -D "$dir/replica" -l "$dir/replica.log" -w start >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  echo "postgres://postgres@127.0.0.1:$((port + 1))/postgres?sslmode=disable"
  ;;
stop)
  for n in replica primary; do
    [ -f "$dir/$n/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/$n" -m fast -w stop >/dev/null || true
  done
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
