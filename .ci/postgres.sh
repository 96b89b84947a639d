#!/usr/bin/env bash
# A throw-away PostgreSQL on 127.0.0.1 for the tests (installed from Debian when missing).
#   url=$(bash .ci/postgres.sh DIR)    start a server with its data and socket in DIR (an empty folder), print the
#                                      URL to use as PRUNEKIT_TEST_DATABASE_URL
#   bash .ci/postgres.sh --stop DIR    stop that server and remove DIR
set -euo pipefail
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
if [ "${1:-}" = "--stop" ]; then
  dir="${2:?usage: postgres.sh --stop DIR}"
  if [ -n "$bindir" ] && [ -f "$dir/data/postmaster.pid" ]; then
    run "$bindir/pg_ctl -D $dir/data -m fast -w stop" >/dev/null
  fi
  rm -rf "$dir"
  exit 0
fi
dir="${1:?usage: postgres.sh DIR}"
# a free port unless PG_PORT is given: a server left from an earlier run must not break this one
PORT="${PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
if [ -z "$bindir" ]; then
  echo "installing PostgreSQL from Debian's packages" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
run "$bindir/initdb -D $dir/data -A trust -U postgres" >/dev/null
run "$bindir/pg_ctl -D $dir/data -o '-h 127.0.0.1 -p $PORT -k $dir' -l $dir/log -w start" >/dev/null
run "$bindir/createdb -h 127.0.0.1 -p $PORT -U postgres prunekit"
echo "postgresql://postgres@127.0.0.1:$PORT/prunekit"
