#!/bin/sh
set -eu
exec celery -A contactcenter beat --loglevel "${LOG_LEVEL:-INFO}" \
  --schedule /app/var/celerybeat-schedule
