#!/usr/bin/env bash
# Run the whole suite. DATABASE_URL / REDIS_URL, when set, point it at real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "Browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)." >&2
fi
# Two processes (pytest-xdist), each running whole test files: the suite waits
# on servers, workers and browsers more than it computes, so two share the
# machine's CPUs well. Each has its own test database and Redis database
# (tests/settings.py). PORTAL_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/pytest -n "${PORTAL_TEST_WORKERS:-2}" --dist loadfile "$@"
