#!/usr/bin/env bash
# `make dev`: what `make run` starts (same database, keys and demo data under
# var/, same Celery worker with beat), with debug on and Django's
# autoreloading development server instead of gunicorn: Django's debug pages,
# static files straight from static/, code changes picked up. Ctrl-C stops it.
exec "$(dirname "$0")/run.sh" --dev "$@"
