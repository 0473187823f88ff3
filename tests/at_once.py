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
    outcomes = together(*[call] * times)
    returned = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    return returned, [outcome for outcome in outcomes if isinstance(outcome, Exception)]


def together(*calls: Callable[[], object]) -> list:
    """Each call in its own thread, released together by a barrier: what
    each returned or raised, in the order of ``calls``."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = calls[index]()
        except Exception as error:
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
