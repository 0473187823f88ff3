"""While token refreshes fail transiently (the provider down, 5xx, 429) the
connection says so, distinct from Connected and from Needs reconnect: since
when, and that it is retried. The next stored token set clears it; a
refusal (Needs reconnect) replaces it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connections import oauth, refresh
from connections.models import Connection, ConnectionState
from tests.factories import ConnectionFactory, assign

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def answer(monkeypatch):
    """What the token endpoint does next: an exception to raise, or a token set."""
    said: list = [oauth.OAuthFlowError("The provider answered 503.", transient=True)]

    def request_refresh(connection, secret):
        if isinstance(said[0], Exception):
            raise said[0]
        return said[0]

    monkeypatch.setattr(oauth, "request_refresh", request_refresh)
    return said


@pytest.fixture
def due(tree) -> Connection:
    return ConnectionFactory(
        folder=tree["finance"],
        sandbox=True,
        auth_type="oauth2_authorization_code",
        name="Flaky",
        token_expires_at=timezone.now() + timedelta(seconds=90),
        secret={"access_token": "a", "refresh_token": "r"},
    )


def _fails(connection: Connection) -> None:
    with pytest.raises(refresh.RefreshError) as raised:
        refresh.refresh_connection(connection.pk)
    assert raised.value.transient


def _pages(client, connection: Connection) -> tuple[str, str]:
    folder = connection.folder_id
    detail = client.get(reverse("connection_detail", args=[folder, connection.pk]))
    listing = client.get(reverse("folder_connections", args=[folder]))
    return detail.content.decode(), listing.content.decode()


def test_a_failing_refresh_is_shown_until_a_refresh_succeeds(client, make_user, tree, due, answer):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)

    _fails(due)
    due.refresh_from_db()
    since = due.refresh_failing_since
    assert since is not None and due.state == ConnectionState.CONNECTED
    _fails(due)  # a second failure keeps the first moment
    due.refresh_from_db()
    assert due.refresh_failing_since == since

    detail, listing = _pages(client, due)
    for page in (detail, listing):
        assert 'data-testid="status"' in page and ">Refresh failing</span>" in page
        assert ">Connected</span>" not in page
    assert f"failing since {since:%Y-%m-%d %H:%M} UTC" in detail
    assert "keeps retrying with backoff" in detail

    answer[0] = {"access_token": "new", "refresh_token": "r2", "expires_at": time.time() + 3600}
    refresh.refresh_connection(due.pk)
    due.refresh_from_db()
    assert due.refresh_failing_since is None
    detail, listing = _pages(client, due)
    assert "Refresh failing" not in detail and "Refresh failing" not in listing
    assert ">Connected</span>" in detail


def test_a_refused_refresh_replaces_the_failing_mark(due, answer):
    _fails(due)
    answer[0] = oauth.OAuthFlowError("Refused.", code="invalid_grant")
    with pytest.raises(refresh.RefreshError):
        refresh.refresh_connection(due.pk)
    due.refresh_from_db()
    assert due.state == ConnectionState.NEEDS_RECONNECT
    assert due.refresh_failing_since is None


def test_the_api_says_since_when_refresh_fails(tree, make_user, due, answer):
    from portal import api_keys
    from tests.connections.api.conftest import ApiClient

    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    api = ApiClient(api_keys.issue(owner=user, name="k", actor=user).raw)
    _fails(due)
    due.refresh_from_db()
    answer_body = api.get(f"/api/v1/connections/{due.pk}").json()
    assert answer_body["refresh_failing_since"].startswith(f"{due.refresh_failing_since:%Y-%m-%d}")
    assert answer_body["state"] == "connected"
