"""The Sandbox's "Record created" event against the Sandbox API itself, and
the query that API answers for pollers: since, order, limit, page_token, q.

The poll requests are built by connections.catalog.events and sent through
Django's test client to GET /sandbox/api/records, whose answers are read
back by the same module: the definition is tested against the real API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from connections import sandbox
from connections.catalog import get_catalog
from connections.catalog.events import (
    build_poll_request,
    missing_scopes,
    read_poll_answer,
)
from connections.catalog.schema import AuthKind
from connections.models import SandboxRecord

URL = "/sandbox/api/records"
T0 = datetime(2026, 5, 2, 10, 0, 5, 250000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def ada(make_user):
    return make_user("ada")


@pytest.fixture
def token(ada):
    return sandbox.issue_token(user=ada, name="poller")[1]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def record(user, title: str, at: datetime) -> SandboxRecord:
    made = sandbox.add_record(user=user, title=title)
    SandboxRecord.objects.filter(pk=made.pk).update(created_at=at)
    made.refresh_from_db()
    return made


def titles(answer) -> list[str]:
    return [r["title"] for r in answer.json()["records"]]


# -- the API -----------------------------------------------------------------------


def test_without_a_query_the_answer_is_as_it_was(client, ada, token):
    for n in range(3):
        record(ada, f"Record {n}", T0 + timedelta(seconds=n))
    answer = client.get(URL, **bearer(token))
    assert answer.status_code == 200
    assert answer.json() == {
        "records": [
            {"id": r.pk, "title": r.title, "created_at": r.created_at.isoformat()}
            for r in SandboxRecord.objects.order_by("-created_at")
        ]
    }


def test_since_order_and_title_narrow_the_list(client, ada, token, make_user):
    record(ada, "Invoice 1", T0 - timedelta(minutes=1))
    record(ada, "Order 2", T0)
    record(ada, "Invoice 3", T0 + timedelta(seconds=1))
    record(make_user("bo"), "Invoice of someone else", T0 + timedelta(seconds=2))
    since = {"since": "2026-05-02T10:00:05Z"}
    assert titles(client.get(URL, since, **bearer(token))) == ["Invoice 3", "Order 2"]
    ascending = client.get(URL, {**since, "order": "asc"}, **bearer(token))
    assert titles(ascending) == ["Order 2", "Invoice 3"]
    assert titles(client.get(URL, {"q": "INVOICE"}, **bearer(token))) == ["Invoice 3", "Invoice 1"]
    # A local time with its offset is the same moment.
    local = client.get(URL, {"since": "2026-05-02T12:00:05+02:00"}, **bearer(token))
    assert titles(local) == ["Invoice 3", "Order 2"]


def test_pages_are_cut_by_time_and_id_and_do_not_shift(client, ada, token):
    # Three records in the same microsecond, then two more.
    for n in range(3):
        record(ada, f"Same {n}", T0)
    record(ada, "Later 3", T0 + timedelta(seconds=1))
    query = {"order": "asc", "limit": "2"}
    first = client.get(URL, query, **bearer(token)).json()
    assert [r["title"] for r in first["records"]] == ["Same 0", "Same 1"]
    # Added while the client pages, in the past of the cursor: not on the next page.
    record(ada, "Late 4", T0 - timedelta(seconds=1))
    second = client.get(URL, {**query, "page_token": first["next_page_token"]}, **bearer(token))
    assert titles(second) == ["Same 2", "Later 3"]
    assert "next_page_token" not in second.json()
    newest = client.get(URL, {"limit": "2"}, **bearer(token)).json()
    assert [r["title"] for r in newest["records"]] == ["Later 3", "Same 2"]
    rest = client.get(URL, {"limit": "2", "page_token": newest["next_page_token"]}, **bearer(token))
    assert titles(rest) == ["Same 1", "Same 0"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "since must be an ISO 8601 date and time"),
        ({"order": "newest"}, "order must be asc or desc."),
        ({"limit": "0"}, "limit must be a whole number from 1 to 100."),
        ({"limit": "101"}, "limit must be a whole number from 1 to 100."),
        ({"limit": "-5"}, "limit must be a whole number from 1 to 100."),
        ({"page_token": "bm90LWEtdG9rZW4"}, "page_token is not one this API gave."),
    ],
)
def test_a_bad_query_is_refused_with_a_message(client, token, query, message):
    answer = client.get(URL, query, **bearer(token))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert message in answer.json()["error_description"]


# -- the event, polled against the API ---------------------------------------------


class Poller:
    """What the poller does for one trigger, with the test client as transport."""

    def __init__(self, client, token: str, filters: dict | None = None):
        self.client, self.token = client, token
        self.connector = get_catalog().get("sandbox")
        self.event = self.connector.event("record_created")
        self.filters = filters or {}
        self.cursor: str | None = None
        self.stored: dict[str, str] = {}
        self.requests = []

    def poll(self, *, include_existing: bool = False) -> list[str]:
        """One poll; the titles it fired."""
        fired, page = [], None
        for _ in range(self.event.max_pages):
            request = build_poll_request(
                self.connector,
                self.event,
                auth_kind=AuthKind.PAT,
                fields={},
                filters=self.filters,
                cursor=self.cursor,
                page=page,
                include_existing=include_existing,
            )
            self.requests.append(request)
            assert urlsplit(request.url).netloc == "testserver"
            response = self.client.get(
                urlsplit(request.url).path, request.params, **bearer(self.token)
            )
            assert response.status_code == 200, response.content
            result = read_poll_answer(request, answer=response.json(), headers=response.headers)
            for item in result.items:
                if item.provider_id not in self.stored:
                    self.stored[item.provider_id] = item.summary
                    fired.append(item.summary)
            self.cursor, page = result.cursor, result.next_page
            if page is None:
                break
        return fired


def test_the_first_poll_starts_from_now(client, ada, token):
    record(ada, "Old 1", T0 - timedelta(hours=1))
    record(ada, "Old 2", T0)
    poller = Poller(client, token)
    assert poller.poll() == []
    assert poller.requests[0].first_poll
    assert poller.requests[0].params == {"limit": "20"}
    record(ada, "New 3", T0 + timedelta(seconds=30))
    assert poller.poll() == ["New 3"]
    assert poller.requests[-1].params == {
        "since": "2026-05-02T09:59:05Z",
        "order": "asc",
        "limit": "50",
    }
    assert poller.poll() == []


def test_include_existing_fires_what_exists(client, ada, token):
    record(ada, "Old 1", T0 - timedelta(days=400))
    record(ada, "Old 2", T0)
    poller = Poller(client, token)
    assert poller.poll(include_existing=True) == ["Old 1", "Old 2"]
    assert poller.requests[0].params["since"] == "1970-01-01T00:00:00Z"


def test_two_records_in_the_same_second_at_the_boundary(client, ada, token):
    """One record is seen, the cursor moves to its time; another with the
    same timestamp becomes visible afterwards (a late commit): the overlap
    brings both, and only the new one fires."""
    record(ada, "Old", T0 - timedelta(hours=1))
    poller = Poller(client, token)
    poller.poll()
    record(ada, "First", T0)
    assert poller.poll() == ["First"]
    record(ada, "Second, same instant", T0)
    assert poller.poll() == ["Second, same instant"]
    assert poller.poll() == []


def test_a_new_trigger_whose_newest_records_share_a_second(client, ada, token):
    record(ada, "Existing A", T0)
    record(ada, "Existing B", T0)
    poller = Poller(client, token)
    poller.poll()
    record(ada, "New, same instant", T0)
    assert poller.poll() == ["New, same instant"]


def test_many_new_records_are_paged_and_the_rest_waits_for_the_next_poll(client, ada, token):
    poller = Poller(client, token)
    poller.poll()  # nothing yet: from the beginning
    for n in range(260):
        record(ada, f"Bulk {n:03d}", T0 + timedelta(milliseconds=n))
    first = poller.poll()
    # Five pages of fifty: the page bound. The cursor covers what was stored.
    assert len(first) == 250 and first[0] == "Bulk 000" and first[-1] == "Bulk 249"
    assert [r.params.get("page_token") is not None for r in poller.requests[-5:]] == [
        False,
        True,
        True,
        True,
        True,
    ]
    assert poller.poll() == [f"Bulk {n}" for n in range(250, 260)]
    assert len(poller.stored) == 260


def test_the_title_filter_narrows_what_fires(client, ada, token):
    poller = Poller(client, token, {"title_contains": "invoice"})
    poller.poll()
    record(ada, "Invoice 1", T0)
    record(ada, "Order 2", T0 + timedelta(seconds=1))
    assert poller.poll() == ["Invoice 1"]
    assert poller.requests[-1].params["q"] == "invoice"


def test_an_oauth_connection_without_records_read_is_told_which_scope(client, ada):
    connector = get_catalog().get("sandbox")
    auth = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    event = connector.event("record_created")
    assert missing_scopes(event, auth, ["profile"]) == ["records.read"]
    assert missing_scopes(event, auth, auth.oauth2.default_scopes) == []
    assert missing_scopes(event, connector.auth_type(AuthKind.PAT), []) == []
