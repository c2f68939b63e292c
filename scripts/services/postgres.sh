#!/usr/bin/env bash
# Install and start PostgreSQL 15 on 127.0.0.1:5432 with wal_level=logical.
# Idempotent: safe to run any number of times. Superuser postgres / password postgres.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PG_VERSION=15
if ! command -v pg_ctlcluster >/dev/null || [ ! -d /usr/lib/postgresql/$PG_VERSION ]; then
  apt_install postgresql postgresql-contrib
fi
if [ ! -d /etc/postgresql/$PG_VERSION/main ]; then
  pg_createcluster $PG_VERSION main
fi

conf=/etc/postgresql/$PG_VERSION/main/conf.d/tideflow.conf
mkdir -p "$(dirname "$conf")"
desired=$(cat <<CONF
listen_addresses = '127.0.0.1'
port = 5432
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 300
wal_sender_timeout = 60s
shared_buffers = 256MB
synchronous_commit = on
fsync = on
CONF
)
changed=0
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$desired" ]; then
  echo "$desired" > "$conf"; changed=1
fi

hba=/etc/postgresql/$PG_VERSION/main/pg_hba.conf
for line in "host all all 127.0.0.1/32 scram-sha-256" "host replication all 127.0.0.1/32 scram-sha-256"; do
  if ! grep -qxF "$line" "$hba"; then
    # Prepend so our rules win over Debian's defaults.
    { echo "$line"; cat "$hba"; } > "$hba.new" && mv "$hba.new" "$hba"
    chown postgres:postgres "$hba"; changed=1
  fi
done

if pg_ctlcluster $PG_VERSION main status >/dev/null 2>&1; then
  [ "$changed" = 1 ] && pg_ctlcluster $PG_VERSION main restart
else
  pg_ctlcluster $PG_VERSION main start
fi

wait_for "postgres" 60 runuser -u postgres -- psql -tAc 'select 1'
runuser -u postgres -- psql -qtA -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
wait_for "postgres tcp" 60 env PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -tAc 'select 1'
echo "postgres: postgresql://postgres:postgres@127.0.0.1:5432/postgres (wal_level=$(PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -tAc 'show wal_level'))"
