#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for the storage tests, from Debian's package.
# Usage: eval "$(bash .ci/postgres.sh)"   -> exports NAS_HPO_TEST_POSTGRES=postgresql://...
# Prints nothing (and the tests skip with a reason) where no server can be started.
set -euo pipefail
log() { echo "postgres.sh: $*" >&2; }
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
      >/dev/null 2>&1 || { log "apt-get install postgresql failed"; exit 0; }
  else
    log "no PostgreSQL binaries and no root to install them"; exit 0
  fi
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
user=postgres
id "$user" >/dev/null 2>&1 || { log "no postgres user"; exit 0; }
data=$(mktemp -d /tmp/nas-hpo-pg.XXXXXX)
chown "$user" "$data"
port=$((20000 + RANDOM % 20000))
password=nas-hpo-test-$RANDOM$RANDOM
as_pg() { runuser -u "$user" -- "$@"; }
echo "$password" > "$data/pw" && chown "$user" "$data/pw"
as_pg "$bin/initdb" -D "$data/db" -U postgres -A scram-sha-256 --pwfile="$data/pw" >/dev/null \
  || { log "initdb failed"; exit 0; }
as_pg "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $data" start >/dev/null \
  || { log "server did not start; see $data/log"; exit 0; }
as_pg env PGPASSWORD="$password" "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres \
  -c "CREATE ROLE hpo LOGIN PASSWORD '$password'" -c "CREATE DATABASE hpo OWNER hpo" \
  >/dev/null || { log "could not create the test database"; exit 0; }
echo "export NAS_HPO_TEST_POSTGRES=postgresql://hpo:$password@127.0.0.1:$port/hpo"
echo "export NAS_HPO_TEST_POSTGRES_STOP='runuser -u $user -- $bin/pg_ctl -D $data/db stop -m fast'"
