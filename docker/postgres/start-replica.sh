#!/bin/sh
# A streaming replica of `postgres` (the `scale` profile): cloned once with
# pg_basebackup -R (which writes the standby settings), then served read-only.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready --host postgres --username "$POSTGRES_USER"; do sleep 1; done
  PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup --host postgres --username "$POSTGRES_USER" \
    --pgdata "$PGDATA" --write-recovery-conf --wal-method=stream --checkpoint=fast
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
