"""One contender process for the refresh concurrency test: N threads that
all ask for a fresh token of one connection at the same instant.

    python -m tests.connections.refresh_contender CONNECTION_ID START_AT THREADS [--bypass]

``--bypass`` disables the single-flight lease, to show what it prevents.
Prints one JSON line: how many callers got a token and the errors seen.
"""

import json
import os
import sys
import threading
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.db import connection as db  # noqa: E402

from connections import refresh  # noqa: E402


def main() -> None:
    connection_id, start_at, threads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    if "--bypass" in sys.argv:
        refresh._take_lease = lambda *args: True
    results = {"ok": 0, "errors": []}
    lock = threading.Lock()

    def contender() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            refresh.refresh_connection(connection_id)
            with lock:
                results["ok"] += 1
        except Exception as error:
            with lock:
                results["errors"].append(f"{type(error).__name__}: {error}"[:200])
        finally:
            db.close()

    workers = [threading.Thread(target=contender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
