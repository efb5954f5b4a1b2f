#!/bin/sh
set -eu
exec celery -A config beat --loglevel "${LOG_LEVEL:-INFO}" \
  --schedule /app/var/celerybeat-schedule
