"""Calls started together in threads, for what the portal claims about
requests that arrive at the same time. Each thread has its own database
connection on a server database; SQLite's in-memory test database has one
connection for all threads, so such tests run on PostgreSQL (CI)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection


def needs_a_server_database() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("needs a server database for concurrent writers; CI runs it on PostgreSQL")


def at_once(call: Callable[[], object], times: int = 4) -> tuple[list, list[Exception]]:
    """``call`` in ``times`` threads released together by a barrier: what
    the calls returned and what they raised. Each thread closes its database
    connection when it is done."""
    barrier = threading.Barrier(times)
    returned: list = []
    raised: list[Exception] = []

    def run() -> None:
        barrier.wait()
        try:
            returned.append(call())
        except Exception as error:
            raised.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return returned, raised
