#!/usr/bin/env bash
# docker-compose: run once by the postgres image on a fresh volume (/docker-entrypoint-initdb.d/). A role that may
# stream WAL, and a pg_hba.conf entry letting it in from the compose network, so that the `scale` profile's
# postgres-replica can clone this server with pg_basebackup and follow it.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
  -c "CREATE ROLE replicator REPLICATION LOGIN PASSWORD '${POSTGRES_REPLICATION_PASSWORD:-replicator}'"
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
