#!/bin/sh
set -eu
python manage.py collectstatic --noinput --verbosity 0
exec gunicorn contactcenter.wsgi:application \
  --bind 0.0.0.0:8000 \
  --workers "${WEB_CONCURRENCY:-4}" \
  --timeout 30 \
  --access-logfile - \
  --access-logformat '{"remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,"request_id":"%({X-Request-ID}o)s"}'
