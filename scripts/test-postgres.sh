#!/usr/bin/env bash
# A private PostgreSQL server for the collector's tests, on loopback only.
#   scripts/test-postgres.sh start   initialise (once) and start it; prints its URL
#   scripts/test-postgres.sh stop    stop it (pg_ctl, by its own PID file)
# Data under /var/lib/openmosix/test-postgres (0700, owned by postgres); password
# authentication with a random password kept there. Port: $OPENMOSIX_TEST_PG_PORT
# (default 55432). Debian's postgresql package must be installed (install-deps.sh).
set -euo pipefail

BASE=/var/lib/openmosix/test-postgres
PORT=${OPENMOSIX_TEST_PG_PORT:-55432}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$BIN" ] || { echo "test-postgres: PostgreSQL server binaries not found" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

start() {
  install -d -m 0755 /var/lib/openmosix
  if [ ! -f "$BASE/data/PG_VERSION" ]; then
    rm -rf "$BASE"
    install -d -m 0700 -o postgres -g postgres "$BASE" "$BASE/sock"
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$BASE/password"
    chown postgres:postgres "$BASE/password"; chmod 0600 "$BASE/password"
    as_pg "$BIN/initdb" -D "$BASE/data" -U omtest --pwfile="$BASE/password" \
      --auth=scram-sha-256 -E UTF8 --no-locale >/dev/null
  fi
  if ! as_pg "$BIN/pg_ctl" -D "$BASE/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE/sock -c fsync=off -c max_connections=200" \
      start >/dev/null
  fi
  echo "postgres://omtest:$(cat "$BASE/password")@127.0.0.1:$PORT/postgres"
}

stop() {
  if [ -f "$BASE/data/PG_VERSION" ]; then
    as_pg "$BIN/pg_ctl" -D "$BASE/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
