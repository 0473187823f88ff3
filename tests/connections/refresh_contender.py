"""One contender process for the refresh concurrency test: N threads that
all ask for a fresh token of one connection at the same instant.

    python -m tests.connections.refresh_contender CONNECTION_ID START_AT THREADS [--bypass]

``--bypass`` disables the single-flight lease, to show what it prevents.
Prints one JSON line: how many callers got a token and the errors seen.
"""

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from connections import refresh  # noqa: E402
from tests.at_once import at_once  # noqa: E402


def main() -> None:
    connection_id, start_at, threads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    if "--bypass" in sys.argv:
        refresh._take_lease = lambda *args: True

    def contend() -> dict:
        # Threads of the other contender processes start at the same instant.
        time.sleep(max(0.0, start_at - time.time()))
        return refresh.refresh_connection(connection_id)

    got, raised = at_once(contend, threads)
    errors = [f"{type(error).__name__}: {error}"[:200] for error in raised]
    print(json.dumps({"ok": len(got), "errors": errors}))


if __name__ == "__main__":
    main()
