"""Counting the queries of a page, for the tests that hold a page to a
constant number of queries whatever it lists."""

from __future__ import annotations

from django.db import connection as db
from django.test.utils import CaptureQueriesContext


def page_queries(client, url: str, params: dict | None = None):
    """(the queries of GET ``url``, its response), in steady state: the page
    is asked once first, so that what a process reads once and keeps (the
    permissions' ids, content types) is not counted, whichever test ran
    first in this process."""
    client.get(url, params or {})
    with CaptureQueriesContext(db) as captured:
        response = client.get(url, params or {})
    return len(captured), response
