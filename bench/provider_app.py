"""The provider of bench/polling_bench.py: the two Sandbox API paths the
portal's polling engine requests, answered at once, with no database, so
that the bench measures the portal and not the provider.

- ``GET /sandbox/api/me``: the Sandbox health check, ``{"login": "bench"}``.
- ``GET /sandbox/api/records``: the Sandbox "Record created" event. No
  records, except for a credential containing "fire" on a poll that has a
  cursor (``since=``): then one new record, made now, with an id of its own.

Served by gunicorn with threads (keep-alive): ``bench.provider_app:app``.
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime

_ids = itertools.count(1)
_EMPTY = json.dumps({"records": [], "next_page_token": None}).encode()
_ME = json.dumps({"login": "bench"}).encode()


def _answer(start_response, status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/sandbox/api/me":
        return _answer(start_response, "200 OK", _ME)
    if path == "/sandbox/api/records":
        fire = "fire" in environ.get("HTTP_AUTHORIZATION", "")
        if fire and "since=" in environ.get("QUERY_STRING", ""):
            record = {
                "id": f"{os.getpid()}-{next(_ids)}",
                "title": "Bench record",
                "created_at": datetime.now(UTC).isoformat(),
            }
            body = json.dumps({"records": [record], "next_page_token": None}).encode()
            return _answer(start_response, "200 OK", body)
        return _answer(start_response, "200 OK", _EMPTY)
    return _answer(start_response, "404 Not Found", b'{"error": "not_found"}')
