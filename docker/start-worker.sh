#!/bin/sh
set -eu
exec celery -A config worker \
  --loglevel "${LOG_LEVEL:-INFO}" \
  --concurrency "${WORKER_CONCURRENCY:-4}" \
  -Q "${WORKER_QUEUES:-inbound,outbound,reminders,escalations,default}"
