#!/usr/bin/env bash
# Run the whole suite. DATABASE_URL / REDIS_URL, when set, point it at real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "Browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)." >&2
fi
exec .venv/bin/pytest "$@"
