#!/bin/sh
set -eu
# The workspace's server-sent event streams (/live/) only: each is an async view
# awaiting Redis pub/sub, so one uvicorn process holds thousands of them, where a
# threaded WSGI worker would hold one thread per open page. Every other path goes
# to `web` (the proxy routes by path).
exec gunicorn config.asgi:application \
  --worker-class uvicorn_worker.UvicornWorker \
  --bind 0.0.0.0:8001 \
  --workers "${LIVE_CONCURRENCY:-1}" \
  --timeout 30 \
  --graceful-timeout 10
