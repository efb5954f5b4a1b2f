#!/usr/bin/env bash
# `make run` after the install: local development keys, migrations and demo data,
# then the web server, a worker and beat on the embedded defaults (SQLite and the
# filesystem broker under var/). Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PORT=${PORT:-8000}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}

"$VENV/bin/python" scripts/generate_dev_keys.py var/dev.env
# The filesystem broker's folders exist before the demo data queues its first tasks.
mkdir -p var/broker/queue var/broker/control var/broker/processed
"$VENV/bin/python" manage.py migrate --noinput
"$VENV/bin/python" manage.py load_demo

pids=()
stop_all() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  # Give each a few seconds to finish its current request or task, then insist.
  for _ in $(seq 1 20); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

"$VENV/bin/celery" -A config worker --loglevel INFO --pool solo \
  -Q inbound,outbound,reminders,escalations,default &
pids+=($!)
"$VENV/bin/celery" -A config beat --loglevel INFO &
pids+=($!)
"$VENV/bin/python" manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)

cat <<MSG

  contactcenter is starting (web, worker, beat). Ctrl-C stops all three.
    API root      http://127.0.0.1:$PORT/api/v1/
    API docs      http://127.0.0.1:$PORT/api/docs/
    Workspace     http://127.0.0.1:$PORT/inbox/  (staff: agents, nurses, supervisors)
    Admin         http://127.0.0.1:$PORT/admin/
    Readiness     http://127.0.0.1:$PORT/health/ready/
  Demo logins (password for all: demo-password-123, no second factor locally):
    agent.north, supervisor.north, agent.south, nurse.clinical, compliance, admin
  Try it: .venv/bin/python manage.py simulate_inbound --scenario (see README, "Try it")

MSG
wait -n
