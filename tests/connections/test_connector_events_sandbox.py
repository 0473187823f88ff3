"""The query the Sandbox API answers for pollers: since, order, limit,
page_token, q."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connections import sandbox
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
