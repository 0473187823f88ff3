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

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection as db
from django.utils import timezone

from connections import refresh, vault
from connections.models import Connection, ConnectionEvent, ConnectionState
from tests.connections.kill_checkpoints import read_events
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import assign
from tests.servers import database_url

ROOT = Path(__file__).resolve().parents[2]
TASK = "connections.tasks.refresh_connection"
VISIBILITY_TIMEOUT = 3  # seconds: an unacknowledged message is delivered again after this
LEASE_SECONDS = 4  # the dead worker's refresh lease runs out soon after that
# A Redis database of this test's own: the restarted worker restores every
# unacknowledged message older than the visibility timeout in its database,
# which must not be other programs' work in progress. Plus a queue per test.
REDIS_DB = 11

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _servers():
    if db.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL): CI runs it")


def _redis_url() -> str:
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{REDIS_DB}"))


class Broker:
    """The test's queue on Redis: send the task, see what is left of it."""

    def __init__(self) -> None:
        import redis
        from celery import Celery

        self.url = _redis_url()
        self.queue = f"kill-test-{uuid.uuid4().hex[:12]}"
        self.redis = redis.Redis.from_url(self.url)
        self.app = Celery("kill-test", broker=self.url, set_as_current=False)
        self.nodes: list[str] = []

    def send(self, connection_id: int) -> None:
        self.app.send_task(TASK, args=[connection_id], queue=self.queue)

    def waiting(self) -> int:
        return self.redis.llen(self.queue)

    def unacked(self) -> list[bytes]:
        """Delivery tags of this queue's messages taken by a worker and not acknowledged."""
        return [
            tag
            for tag, raw in self.redis.hgetall("unacked").items()
            if json.loads(raw)[2] == self.queue
        ]

    def close(self) -> None:
        tags = self.unacked()
        if tags:
            self.redis.hdel("unacked", *tags)
            self.redis.zrem("unacked_index", *tags)
        self.redis.delete(
            self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"
        )
        # Killed workers leave their remote-control binding behind.
        if self.nodes:
            self.redis.srem("_kombu.binding.celery.pidbox", *self.nodes)
        self.app.close()
        self.redis.close()


@pytest.fixture
def broker():
    queue = Broker()
    yield queue
    queue.close()


class Worker:
    """``celery -A portal worker`` in a process group of its own (the main
    process and its pool process die together)."""

    def __init__(self, name: str, folder: Path, base_url: str, broker: Broker, **env: str) -> None:
        self.events = folder / f"{name}.events"
        self.log = folder / f"{name}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": _redis_url(),
            "PORTAL_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "PORTAL_REFRESH_LEASE_SECONDS": str(LEASE_SECONDS),
            "PORTAL_BASE_URL": base_url,
            "PORTAL_SANDBOX_ENABLED": "1",
            "PORTAL_TEST_EVENTS": str(self.events),
            **env,
        }
        node = f"{name}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        broker.nodes.append(f"{node}.celery.pidbox")
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker",
            "--include", "tests.connections.kill_checkpoints",
            "-Q", broker.queue, "-n", node,
            "-P", "prefork", "-c", "1", "-l", "INFO",
            "--without-heartbeat", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
                command,
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def read(self) -> list[dict]:
        return read_events(self.events)

    def wait_for(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.read() if e["event"] == event]
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} from the worker:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


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
    first = Worker("first", tmp_path, live_server.url, broker, PORTAL_TEST_KILL_AT=point)
    second = None
    try:
        first.wait_for("ready", timeout=30)
        broker.send(connection.pk)
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
        second = Worker("second", tmp_path, live_server.url, broker)
        second.wait_for("task_done", timeout=40)
        deadline = time.monotonic() + 10
        while (broker.waiting() or broker.unacked()) and time.monotonic() < deadline:
            time.sleep(0.1)  # acknowledged right after the task returns
        assert broker.waiting() == 0 and broker.unacked() == [], second.tail()
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
