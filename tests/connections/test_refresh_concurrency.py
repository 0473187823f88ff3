"""Single-flight refresh under real concurrency: 20 callers in two processes,
started together, against an authorization server that rotates refresh
tokens (and revokes the family on reuse) and answers after more than a
second. With the lease: one token request, a healthy connection. Without it
(the same test, guard bypassed): several requests and a broken connection."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection as db
from django.utils import timezone

from connections import refresh, vault
from connections.models import Connection, ConnectionState
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import assign
from tests.servers import database_url

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, THREADS = 2, 10

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def slow_token_endpoint(monkeypatch):
    """The sandbox server's token endpoint answers after 1.2 s; refresh
    requests are counted."""
    from oauth2_provider import views

    refreshes = []
    original = views.TokenView.post

    def slow(self, request, *args, **kwargs):
        if request.POST.get("grant_type") == "refresh_token":
            refreshes.append(time.monotonic())
            time.sleep(1.2)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(views.TokenView, "post", slow)
    return refreshes


def _connected(client, make_user, tree) -> Connection:
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "Busy"})
    client.get(local(approve(client, continue_url(response))))
    connection = Connection.objects.get()
    # Due: the access token expires within the lead time.
    Connection.objects.filter(pk=connection.pk).update(
        token_expires_at=timezone.now() + timedelta(seconds=30)
    )
    return connection


def _contend(connection: Connection, live_server, *, bypass: bool) -> list[dict]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PORTAL_BASE_URL": live_server.url,
        "PORTAL_SANDBOX_ENABLED": "1",
    }
    start_at = time.time() + 3  # every process is up by then: the barrier
    command = [
        sys.executable, "-m", "tests.connections.refresh_contender",
        str(connection.pk), str(start_at), str(THREADS),
    ]  # fmt: skip
    if bypass:
        command.append("--bypass")
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603
        for _ in range(PROCESSES)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def _skip_without_server_database():
    if db.vendor != "postgresql":
        pytest.skip("needs a database several processes share: CI runs it on PostgreSQL")


def test_twenty_callers_one_token_request(
    client, make_user, tree, sandbox_oauth, slow_token_endpoint
):
    _skip_without_server_database()
    connection = _connected(client, make_user, tree)
    results = _contend(connection, sandbox_oauth, bypass=False)
    assert sum(r["ok"] for r in results) == PROCESSES * THREADS, results
    assert len(slow_token_endpoint) == 1
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert refresh.is_fresh(connection)
    # Healthy: the stored refresh token is the live one.
    assert refresh.refresh_connection(connection.pk, force=True)["access_token"]


def test_without_the_guard_the_connection_breaks(
    client, make_user, tree, sandbox_oauth, slow_token_endpoint
):
    _skip_without_server_database()
    connection = _connected(client, make_user, tree)
    _contend(connection, sandbox_oauth, bypass=True)
    assert len(slow_token_endpoint) > 1
    # The provider saw its rotated refresh token reused and revoked the family.
    connection.refresh_from_db()
    if connection.state != ConnectionState.NEEDS_RECONNECT:
        with pytest.raises(refresh.RefreshError):
            refresh.refresh_connection(connection.pk, force=True)
        connection.refresh_from_db()
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    assert vault.read_secret(connection)["refresh_token"]
