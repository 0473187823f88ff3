"""The Sandbox API's records and the Sandbox tokens page: the views parse
and answer, connections.sandbox keeps the rules (which tokens still work,
how long a title may be, how many records a read returns)."""

import pytest
from django.urls import reverse

from connections import sandbox
from connections.models import SandboxRecord


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def ada(make_user):
    return make_user("ada")


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_records_are_added_and_read_newest_first(client, ada):
    _, token = sandbox.issue_token(user=ada, name="tries")
    url = reverse("sandbox_api_records")
    first = client.post(url, {"title": " First "}, content_type="application/json", **bearer(token))
    assert first.status_code == 201 and first.json()["title"] == "First"
    long = client.post(url, {"title": "x" * 300}, content_type="application/json", **bearer(token))
    assert long.status_code == 201 and len(long.json()["title"]) == 200
    empty = client.post(url, {"title": " "}, content_type="application/json", **bearer(token))
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_request"
    listed = client.get(url, **bearer(token)).json()["records"]
    assert [record["id"] for record in listed] == [long.json()["id"], first.json()["id"]]
    assert client.get(url).status_code == 401


def test_a_read_returns_the_latest_hundred(ada, make_user):
    SandboxRecord.objects.bulk_create(
        SandboxRecord(user=ada, title=f"Record {n}") for n in range(sandbox.RECORDS_LISTED + 5)
    )
    sandbox.add_record(user=make_user("bo"), title="Someone else's")
    latest = list(sandbox.latest_records(ada))
    assert len(latest) == sandbox.RECORDS_LISTED
    assert latest[0].title == f"Record {sandbox.RECORDS_LISTED + 4}"
    assert all(record.user == ada for record in latest)


def test_a_revoked_token_is_refused_and_no_longer_listed(client, ada, make_user):
    record, token = sandbox.issue_token(user=ada, name="short-lived")
    assert sandbox.authenticate(token) is not None
    client.force_login(ada)
    revoke = reverse("sandbox_token_revoke", args=[record.pk])
    assert client.post(revoke).status_code == 302
    assert sandbox.authenticate(token) is None
    assert not sandbox.active_tokens(ada).exists()
    # Revoked already, or another's: not found.
    assert client.post(revoke).status_code == 404
    theirs, _ = sandbox.issue_token(user=make_user("bo"), name="theirs")
    assert client.post(reverse("sandbox_token_revoke", args=[theirs.pk])).status_code == 404
    assert sandbox.active_tokens(theirs.user).count() == 1
