"""A worker killed in the middle of a refresh loses nothing (docs/operations.md,
"Token refresh"): a real ``celery -A portal worker`` on Redis, with a
visibility timeout of a few seconds, is SIGKILLed at one of three points of a
refresh, then a fresh worker is started and the task is delivered again.

1. before the token request: refreshed once, by the second worker;
2. after the provider answered, before the commit: the provider has spent
   the old refresh token, so the connection ends Needs reconnect with a clear
   message, its row holds the complete old token set, and the task does not
   loop;
3. after the commit: the second worker finds a fresh token and sends nothing.

The provider is the Sandbox authorization server (django-oauth-toolkit,
rotating refresh tokens with reuse protection) in this process's live
server, so its token requests are counted here. The worker is steered by
``tests.connections.kill_checkpoints``. Needs PostgreSQL and Redis (CI).
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from connections import refresh, vault
from connections.models import Connection, ConnectionEvent, ConnectionState
from tests.celery_worker import VISIBILITY_TIMEOUT, Broker, Worker
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import assign

TASK = "connections.tasks.refresh_connection"
LEASE_SECONDS = 4  # the dead worker's refresh lease runs out soon after the visibility timeout

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def _worker(name: str, folder: Path, base_url: str, broker: Broker, **env: str) -> Worker:
    """A worker with the refresh's kill points, its lease short enough for
    the second worker to take over soon after the first one dies."""
    return Worker(
        name,
        folder,
        broker,
        include="tests.connections.kill_checkpoints",
        PORTAL_REFRESH_LEASE_SECONDS=str(LEASE_SECONDS),
        PORTAL_BASE_URL=base_url,
        **env,
    )


def _connected(client, make_user, tree) -> Connection:
    """A connection made through the real authorization-code flow, now due."""
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "Killed"})
    client.get(local(approve(client, continue_url(response))))
    connection = Connection.objects.get()
    Connection.objects.filter(pk=connection.pk).update(
        token_expires_at=timezone.now() + timedelta(seconds=30)
    )
    connection.refresh_from_db()
    return connection


def _kill_and_restart(point, connection, live_server, broker, tmp_path, token_requests):
    """Kill the first worker at ``point``, start a second one once the
    message may be delivered again, and let it finish the task."""
    first = _worker("first", tmp_path, live_server.url, broker, PORTAL_TEST_KILL_AT=point)
    second = None
    try:
        first.wait_for("ready", timeout=30)
        broker.send(TASK, connection.pk)
        stopped = first.wait_for("stopped", timeout=30)
        assert stopped["name"] == point
        first.kill()
        sent_by_first = token_requests.count("refresh_token")
        # Taken and never acknowledged: only the broker can give it back.
        assert broker.waiting() == 0 and len(broker.unacked()) == 1
        # The message was delivered before the worker stopped: once the
        # visibility timeout has passed since then, the next worker to start
        # restores it (kombu restores visible messages when it starts polling).
        time.sleep(max(0.0, stopped["at"] + VISIBILITY_TIMEOUT + 0.5 - time.time()))
        second = _worker("second", tmp_path, live_server.url, broker)
        second.wait_for("task_done", timeout=40)
        # Acknowledged right after the task returns.
        assert broker.drained(timeout=10), second.tail()
        return sent_by_first, first.read(), second.read()
    finally:
        first.kill()
        if second is not None:
            second.kill()


def _checkpoints(events: list[dict]) -> list[str]:
    return [e["name"] for e in events if e["event"] == "checkpoint"]


def _live_at_provider(refresh_token: str) -> bool:
    from oauth2_provider.models import get_refresh_token_model

    checksum = hashlib.sha256(refresh_token.encode()).hexdigest()
    return (
        get_refresh_token_model()
        .objects.filter(token_checksum=checksum, revoked__isnull=True)
        .exists()
    )


def _refreshed_events(connection) -> int:
    return ConnectionEvent.objects.filter(
        connection=connection, kind=ConnectionEvent.Kind.REFRESHED
    ).count()


def test_killed_before_the_token_request_refreshes_once(
    client, make_user, tree, sandbox_oauth, token_requests, broker, tmp_path
):
    connection = _connected(client, make_user, tree)
    before = vault.read_secret(connection)
    sent_by_first, first, second = _kill_and_restart(
        "before_request", connection, sandbox_oauth, broker, tmp_path, token_requests
    )
    assert sent_by_first == 0
    assert _checkpoints(first) == ["before_request"]
    assert _checkpoints(second) == ["before_request", "after_answer", "after_commit"]
    assert token_requests.count("refresh_token") == 1
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert refresh.is_fresh(connection)
    stored = vault.read_secret(connection)
    assert stored["refresh_token"] != before["refresh_token"]
    assert _live_at_provider(stored["refresh_token"])
    assert _refreshed_events(connection) == 1


def test_killed_between_answer_and_commit_needs_reconnect_and_keeps_old_tokens(
    client, make_user, tree, sandbox_oauth, token_requests, broker, tmp_path
):
    connection = _connected(client, make_user, tree)
    before = vault.read_secret(connection)
    expires_before = connection.token_expires_at
    sent_by_first, first, second = _kill_and_restart(
        "after_answer", connection, sandbox_oauth, broker, tmp_path, token_requests
    )
    # The provider answered the first worker and rotated: the old refresh
    # token is spent, and the answer died with the worker.
    assert sent_by_first == 1
    assert _checkpoints(first) == ["before_request", "after_answer"]
    assert not _live_at_provider(before["refresh_token"])
    # The second worker tried the old one once, was refused, and stopped there.
    assert _checkpoints(second) == ["before_request"]
    assert [e["event"] for e in second].count("task_done") == 1
    assert token_requests.count("refresh_token") == 2
    connection.refresh_from_db()
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    # Says what to do (the provider's refusal, then "Reconnect the connection ...").
    assert "reconnect" in connection.last_error.lower()
    # The complete old token set, never a mix of old and new.
    assert vault.read_secret(connection) == before
    assert connection.token_expires_at == expires_before  # as the test set it: untouched
    assert _refreshed_events(connection) == 0
    failed = ConnectionEvent.objects.filter(
        connection=connection, kind=ConnectionEvent.Kind.REFRESH_FAILED
    )
    assert [event.detail for event in failed] == [connection.last_error]
    # No loop: nothing queued or held for later, and nobody refreshes it again.
    with pytest.raises(refresh.RefreshError, match="needs reconnecting"):
        refresh.refresh_connection(connection.pk, force=True)
    assert token_requests.count("refresh_token") == 2


def test_killed_after_the_commit_sends_nothing_more(
    client, make_user, tree, sandbox_oauth, token_requests, broker, tmp_path
):
    connection = _connected(client, make_user, tree)
    before = vault.read_secret(connection)
    sent_by_first, first, second = _kill_and_restart(
        "after_commit", connection, sandbox_oauth, broker, tmp_path, token_requests
    )
    assert sent_by_first == 1
    assert _checkpoints(first) == ["before_request", "after_answer", "after_commit"]
    # The redelivered task ran and found a fresh token: no checkpoint, no request.
    assert [e["event"] for e in second].count("task_done") == 1
    assert _checkpoints(second) == []
    assert token_requests.count("refresh_token") == 1
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert refresh.is_fresh(connection)
    stored = vault.read_secret(connection)
    assert stored["refresh_token"] != before["refresh_token"]
    assert _live_at_provider(stored["refresh_token"])
    assert _refreshed_events(connection) == 1
