#!/bin/sh
# One-shot: apply migrations before web, worker and beat start.
set -eu
exec python manage.py migrate --noinput
