#!/usr/bin/env bash
# Start the portal for development: web server, one Celery worker with beat.
# Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . var/dev.env; set +a
PORT="${PORT:-8000}"
export PORTAL_BASE_URL="${PORTAL_BASE_URL:-http://127.0.0.1:$PORT}"
# make run turns the Sandbox connector on: a working connection with no internet.
export PORTAL_SANDBOX_ENABLED="${PORTAL_SANDBOX_ENABLED:-1}"
BIN=.venv/bin

$BIN/python manage.py migrate --noinput
$BIN/python manage.py setup_sandbox
if [ ! -f var/.demo-loaded ]; then
  $BIN/python manage.py seed_demo && touch var/.demo-loaded
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$BIN/celery -A portal worker --beat --loglevel=INFO --concurrency=2 \
  --schedule var/celery/beat-schedule > var/celery-worker.log 2>&1 &
pids+=($!)
$BIN/python manage.py runserver "127.0.0.1:$PORT" &
pids+=($!)

cat <<MSG

  Connections portal: http://127.0.0.1:$PORT/
  Demo logins (password: demo-portal-2026):
    admin  superuser and tenant administrator
    fiona  Folder Administrator on Shared (and so Finance, HR, Payroll)
    dev    Automation Developer on Shared > Finance
    user   Automation User on Shared > HR
  Celery worker + beat log: var/celery-worker.log
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
