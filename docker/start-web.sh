#!/bin/sh
set -eu
python manage.py collectstatic --noinput --verbosity 0
# No gunicorn access log: the app writes one line per request itself, naming the
# route instead of a path that carries a survey link's token.
exec gunicorn contactcenter.wsgi:application \
  --bind 0.0.0.0:8000 \
  --workers "${WEB_CONCURRENCY:-4}" \
  --timeout 30
