#!/usr/bin/env bash
# Start a throw-away PostgreSQL on 127.0.0.1 for the tests (installing it from Debian when missing)
# and print the URL to use as PRUNEKIT_TEST_DATABASE_URL. Usage: url=$(bash .ci/postgres.sh)
set -euo pipefail
# a free port unless PG_PORT is given: a server left from an earlier run must not break this one
PORT="${PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ]; then
  echo "installing PostgreSQL from Debian's packages" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
dir=$(mktemp -d /tmp/prunekit-pg.XXXXXX)
chown postgres:postgres "$dir"
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
run "$bindir/initdb -D $dir/data -A trust -U postgres" >/dev/null
run "$bindir/pg_ctl -D $dir/data -o '-h 127.0.0.1 -p $PORT -k $dir' -l $dir/log -w start" >/dev/null
run "$bindir/createdb -h 127.0.0.1 -p $PORT -U postgres prunekit"
echo "postgresql://postgres@127.0.0.1:$PORT/prunekit"
