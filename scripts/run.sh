#!/usr/bin/env bash
# `make run`: the portal as it ships, on this machine. Debug off, the portal's
# own error pages, static files collected and served by the app (WhiteNoise),
# gunicorn, one Celery worker with beat; SQLite and the filesystem broker under
# var/ (PORTAL_VAR_DIR). Ctrl-C stops all of it.
#
#   scripts/run.sh                 set up (once) and start the portal
#   scripts/run.sh --dev           the same for development (`make dev`, scripts/dev.sh):
#                                  debug on and Django's autoreloading runserver
#   scripts/run.sh [--dev] CMD...  run CMD in that environment and nothing else,
#                                  e.g. scripts/run.sh .venv/bin/python manage.py shell
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
if [ "${1:-}" = "--dev" ]; then
  DEV=1
  shift
fi

VAR_DIR="${PORTAL_VAR_DIR:-var}"
# Written once by scripts/make_dev_env.py (the Makefile does it): the secret
# key and the vault key that reads var/'s database. Keep it.
set -a
. "$VAR_DIR/dev.env"
set +a
PORT="${PORT:-8000}"
export PORTAL_BASE_URL="${PORTAL_BASE_URL:-http://127.0.0.1:$PORT}"
# The Sandbox connector: a working connection with no internet.
export PORTAL_SANDBOX_ENABLED="${PORTAL_SANDBOX_ENABLED:-1}"

if [ "$DEV" = 1 ]; then
  export PORTAL_DEBUG=1
else
  # Debug off, whatever var/dev.env says (files written before `make dev`
  # existed say PORTAL_DEBUG=1) or the shell exports. Debug off means the
  # production rules in portal/settings.py; this run relaxes only what a
  # portal on http://127.0.0.1 (no TLS, no mail server) needs, and each value
  # can still be overridden from the shell. Production sets none of them.
  export PORTAL_DEBUG=0
  export PORTAL_ALLOWED_HOSTS="${PORTAL_ALLOWED_HOSTS:-127.0.0.1,localhost}"
  # Plain http: no redirect to https, cookies sent over http, no HSTS for 127.0.0.1.
  export PORTAL_SSL_REDIRECT="${PORTAL_SSL_REDIRECT:-false}"
  export PORTAL_SECURE_COOKIES="${PORTAL_SECURE_COOKIES:-false}"
  export PORTAL_HSTS_SECONDS="${PORTAL_HSTS_SECONDS:-0}"
  # The Sandbox OAuth server sends people back to http://127.0.0.1:$PORT.
  export PORTAL_SANDBOX_HTTP_REDIRECTS="${PORTAL_SANDBOX_HTTP_REDIRECTS:-1}"
  # No mail server here: e-mails (password reset...) are printed in this console.
  export PORTAL_EMAIL_BACKEND="${PORTAL_EMAIL_BACKEND:-django.core.mail.backends.console.EmailBackend}"
fi

if [ "$#" -gt 0 ]; then
  exec "$@"
fi

BIN=.venv/bin
if [ "$DEV" = 0 ]; then
  # WhiteNoise serves what this collects (hashed names, compressed copies).
  # It needs no database: it runs beside the migrations.
  $BIN/python manage.py collectstatic --noinput --verbosity 0 &
  collecting=$!
  trap 'kill "$collecting" 2>/dev/null || true' EXIT
fi
$BIN/python manage.py migrate --noinput
$BIN/python manage.py setup_sandbox
if [ ! -f "$VAR_DIR/.demo-loaded" ]; then
  $BIN/python manage.py seed_demo && touch "$VAR_DIR/.demo-loaded"
fi
if [ "$DEV" = 0 ]; then
  wait "$collecting"
fi

# Ctrl-C reaches every process here; this script then sends TERM to each
# server. A server still running 20 s later is killed: when the whole process
# group is sent TERM (`timeout`, `kill -- -PGID`), Celery's pool processes die
# at once and the worker can hang on its pool's lock as it exits.
pids=()
cleanup() {
  trap - INT TERM HUP EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  (
    sleep 20
    kill -KILL "${pids[@]}" 2>/dev/null || true
  ) < /dev/null > /dev/null 2>&1 &
  local watchdog=$!
  wait "${pids[@]}" 2>/dev/null || true
  kill "$watchdog" 2>/dev/null || true
}
trap cleanup INT TERM HUP EXIT

$BIN/celery -A portal worker --beat --loglevel=INFO --concurrency=2 \
  --schedule "$VAR_DIR/celery/beat-schedule" > "$VAR_DIR/celery-worker.log" 2>&1 &
pids+=($!)
if [ "$DEV" = 1 ]; then
  server="Django's development server (debug on, reloads on code changes)"
  $BIN/python manage.py runserver "127.0.0.1:$PORT" &
else
  # One process of eight threads: without REDIS_URL the cache (API and sign-in
  # rate limits) lives in the process, so one process keeps the counts whole
  # (docs/api.md). No control socket: its default path, one per user, would be
  # shared with any other gunicorn. GUNICORN_CMD_ARGS adds options, for
  # example "--access-logfile -" to print every request.
  server="gunicorn (debug off, as in production)"
  $BIN/gunicorn portal.wsgi --bind "127.0.0.1:$PORT" --workers 1 --threads 8 \
    --graceful-timeout 5 --no-control-socket &
fi
pids+=($!)

cat <<MSG

  Connections portal: http://127.0.0.1:$PORT/
  Web: $server
  Demo logins (password: demo-portal-2026):
    admin  superuser and tenant administrator
    fiona  Folder Administrator on Shared (and so Finance, HR, Payroll)
    dev    Automation Developer on Shared > Finance
    user   Automation User on Shared > HR
  Robot account for the runtime API (/api/v1/docs):
    finance-robot  Automation User on Shared > Finance; sign in as admin and
                   make it a key on Tenant settings > Robot accounts
  Celery worker + beat log: $VAR_DIR/celery-worker.log
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
