#!/bin/sh
set -eu
python manage.py collectstatic --noinput --verbosity 0
# ASGI (uvicorn workers under gunicorn): the workspace's live connections are
# async server-sent event streams, which sync workers would hold one per thread.
# No access log (gunicorn's, or uvicorn's, silenced in LOGGING): the app writes one
# line per request itself, naming the route instead of a path that carries a
# survey link's token.
exec gunicorn config.asgi:application \
  --worker-class uvicorn_worker.UvicornWorker \
  --bind 0.0.0.0:8000 \
  --workers "${WEB_CONCURRENCY:-4}" \
  --timeout 30 \
  --graceful-timeout 10
