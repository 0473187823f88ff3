"""One expiry, one token request, whatever the token's lifetime: 30
credential reads over HTTP spread across two portal processes (gunicorn,
16 threads each) and a refresh sweep, released together at a due token,
against a strict provider: single-use refresh tokens, and a spent one coming
back revokes the whole grant. Access tokens living 1 s, 20 s and 300 s, with
the default lead time (300 s): a lead at or above the lifetime once made
every waiter refresh again, and a lease compared on the expiry (kept to the
second) let a caller spend a refresh token already spent.

The negative control serves the same reads with the lease bypassed in both
processes: several token requests, and the provider sees a refresh token
come back.

Needs a database both processes and the test can open: PostgreSQL (CI)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import connections
from django.utils import timezone

from connections import refresh, tasks, vault
from connections.models import Connection, ConnectionState
from connections.oauth_apps import set_portal_app
from portal import api_keys
from tests.connections.strict_provider import StrictProvider
from tests.factories import ConnectionFactory, assign
from tests.servers import free_port, needs_a_shared_database, servers

CALLERS = 30
PROCESSES = 2
BYPASS = str(Path(__file__).resolve().parents[1] / "bypass_lease.py")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def strict(request, settings):
    needs_a_shared_database()
    with StrictProvider(lifetime=request.param, delay=1.0) as provider:
        settings.PORTAL_SANDBOX_ENABLED = True
        settings.PORTAL_BASE_URL = provider.url
        settings.PORTAL_REFRESH_LEAD_SECONDS = 300
        yield provider


def _due_connection(provider: StrictProvider, folder) -> Connection:
    """A Sandbox OAuth connection whose token, issued by the strict provider,
    is due: a quarter of its lifetime left."""
    set_portal_app("sandbox", client_id="portal", client_secret="portal-secret")
    token = provider.issue()
    expires = timezone.now() + timedelta(seconds=provider.lifetime / 4)
    secret = {**token, "expires_at": int(expires.timestamp()), "scope": "profile"}
    connection = ConnectionFactory(
        folder=folder,
        sandbox=True,
        auth_type="oauth2_authorization_code",
        name="Strict",
        token_expires_at=expires,
        token_lifetime_seconds=provider.lifetime,
        secret=secret,
    )
    assert not refresh.is_fresh(connection)
    return connection


def _contend(urls: list[str], connection: Connection, raw_key: str) -> tuple[list, list]:
    """CALLERS reads (alternating between the processes) and one sweep,
    released together: each reader's (status, body), and what the sweep did."""
    barrier = threading.Barrier(CALLERS + 1)
    answers: list = [None] * CALLERS
    swept: list = []

    def caller(index: int) -> None:
        url = f"{urls[index % len(urls)]}/api/v1/connections/{connection.pk}/credentials"
        headers = {"Authorization": f"Bearer {raw_key}"}
        barrier.wait(timeout=30)
        try:
            answer = requests.get(url, headers=headers, timeout=60)
            answers[index] = (answer.status_code, answer.json())
        except Exception as error:
            answers[index] = (None, f"{type(error).__name__}: {error}")

    def sweep() -> None:
        try:
            barrier.wait(timeout=30)
            # As beat starts it; eager: its refresh task runs here.
            swept.append(tasks.refresh_sweep.delay().get())
        except Exception as error:
            swept.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    threads.append(threading.Thread(target=sweep))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a contender did not finish"
    return answers, swept


def _run(strict: StrictProvider, tree, make_user, **serving) -> tuple[Connection, list, list]:
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    connection = _due_connection(strict, tree["finance"])
    raw_key = api_keys.issue(owner=user, name="runner", actor=user).raw
    env = {
        "PORTAL_BASE_URL": strict.url,
        "PORTAL_SANDBOX_ENABLED": "1",
        "PORTAL_API_RATE_LIMIT": "100000/m",
        "PORTAL_REFRESH_LEAD_SECONDS": "300",
    }
    ports = [free_port() for _ in range(PROCESSES)]
    with servers(ports, env=env, threads=16, **serving) as urls:
        answers, swept = _contend(urls, connection, raw_key)
    connection.refresh_from_db()
    return connection, answers, swept


def _outline(answers: list) -> list:
    """Statuses and error bodies, never a 200 body (it holds the token)."""
    return [(status, body if status != 200 else "…") for status, body in answers]


@pytest.mark.parametrize("strict", [1, 20, 300], indirect=True, ids=lambda s: f"{s}s")
def test_one_token_request_per_expiry_across_processes(strict, tree, make_user, eager_celery):
    started = time.monotonic()
    connection, answers, swept = _run(strict, tree, make_user)

    assert [status for status, _ in answers] == [200] * CALLERS, _outline(answers)
    assert len(strict.requests) == 1, strict.requests
    assert strict.reused == []
    (token,) = {body["secret"]["access_token"] for _, body in answers}
    assert token == vault.read_secret(connection)["access_token"]
    assert swept and not isinstance(swept[0], Exception), swept
    assert connection.state == ConnectionState.CONNECTED
    assert connection.token_version == 1
    assert connection.token_lifetime_seconds == strict.lifetime
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("strict", [20], indirect=True, ids=lambda s: f"{s}s")
def test_without_the_lease_the_provider_sees_a_spent_token_again(
    strict, tree, make_user, eager_celery, monkeypatch
):
    monkeypatch.setattr(refresh, "_take_lease", lambda *args: True)  # the sweep's too

    connection, answers, _ = _run(strict, tree, make_user, config=BYPASS)

    assert len(strict.requests) > 1
    assert strict.reused, "the provider saw no refresh token come back"
    assert connection.state == ConnectionState.NEEDS_RECONNECT, _outline(answers)
