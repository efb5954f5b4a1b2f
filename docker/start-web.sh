#!/bin/sh
set -eu
python manage.py collectstatic --noinput --verbosity 0
# WSGI with threads for the API, webhooks, admin and pages: these are sync views
# waiting on PostgreSQL, and on a 2-core node gthread carried about 3x the webhooks
# of uvicorn workers (README, "Web processes on a 2-core node"). The workspace's
# live stream (/live/) is served by the `live` service (start-live.sh); the proxy
# routes it there.
# No access log: the app writes one line per request itself, naming the route
# instead of a path that carries a survey link's token.
exec gunicorn config.wsgi:application \
  --worker-class gthread \
  --bind 0.0.0.0:8000 \
  --workers "${WEB_CONCURRENCY:-4}" \
  --threads "${WEB_THREADS:-4}" \
  --timeout 30 \
  --graceful-timeout 10
