#!/bin/sh
# The primary's first start only (docker-entrypoint-initdb.d): the replica of the
# `scale` profile streams from it as the database owner, with its password.
set -eu
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
