"""Credentials of an expired OAuth token under real concurrency: 10 API calls
(threads making HTTP requests to the live server) and a running refresh sweep,
started together at a barrier, against the Sandbox authorization server whose
token endpoint answers refreshes after more than a second. With the
single-flight guard: one token request, the same new token in every answer, a
healthy connection, one audit record per read. Without it (the same test,
guard bypassed): several token requests.

On SQLite the live server's threads share the in-memory test database's one
connection; tests/connections/api/shared_database.py makes them take turns as threads
with their own connections to a database file would."""

from __future__ import annotations

import gc
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connections
from django.utils import timezone

from connections import refresh, tasks, vault
from connections.models import Connection, ConnectionState
from portal import api_keys
from portal.models import AuditRecord
from tests.connections.api.shared_database import (
    one_transaction_at_a_time,
    shared_in_memory_databases,
)
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import assign

CALLERS = 10
TOKEN_DELAY_SECONDS = 1.2
SWEEP_THREAD = "refresh-sweep"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def sandbox_oauth(live_server, settings):
    """The Sandbox authorization server in the live server, and the portal's
    own app registered on it (as tests/connections/conftest.py has it)."""
    from connections.sandbox_provider import ensure_portal_app

    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    settings.PORTAL_API_RATE_LIMIT = "100000/m"
    ensure_portal_app()
    return live_server


@pytest.fixture
def slow_refresh_grant(monkeypatch):
    """The Sandbox token endpoint answers refresh_token grants after 1.2 s;
    each one that reaches it is counted."""
    from oauth2_provider import views

    refreshes: list[float] = []
    original = views.TokenView.post

    def slow(self, request, *args, **kwargs):
        if request.POST.get("grant_type") == "refresh_token":
            refreshes.append(time.monotonic())
            time.sleep(TOKEN_DELAY_SECONDS)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(views.TokenView, "post", slow)
    return refreshes


@pytest.fixture
def task_runs():
    """The Celery tasks run in this process: (thread name, task name, args,
    when it started, its final state)."""
    from celery import signals

    started: dict[str, float] = {}
    runs: list[tuple] = []

    def prerun(task_id, task, **kwargs):
        started[task_id] = time.monotonic()

    def postrun(task_id, task, args, state, **kwargs):
        name = threading.current_thread().name
        runs.append((name, task.name, tuple(args or ()), started.get(task_id), state))

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    yield runs
    signals.task_prerun.disconnect(prerun)
    signals.task_postrun.disconnect(postrun)


def _expired_connection(client, user, tree) -> Connection:
    """An OAuth connection made through the authorization-code flow at the
    Sandbox server, whose access token has since expired."""
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "Busy"})
    client.get(local(approve(client, continue_url(response))))
    connection = Connection.objects.get()
    assert connection.state == ConnectionState.CONNECTED
    Connection.objects.filter(pk=connection.pk).update(
        token_expires_at=timezone.now() - timedelta(minutes=1)
    )
    connection.refresh_from_db()
    assert not refresh.is_fresh(connection)
    return connection


def _contend(connection: Connection, live_server, raw_key: str) -> tuple[list, int | Exception]:
    """CALLERS credential reads over HTTP and one refresh sweep, released
    together. Returns each caller's (status, body) and what the sweep returned."""
    url = f"{live_server.url}/api/v1/connections/{connection.pk}/credentials"
    barrier = threading.Barrier(CALLERS + 1)
    answers: list = [None] * CALLERS
    swept: list = []
    shared = shared_in_memory_databases()

    def caller(index: int) -> None:
        headers = {"Authorization": f"Bearer {raw_key}", "X-Job-Id": f"job-{index}"}
        barrier.wait(timeout=30)
        try:
            answer = requests.get(url, headers=headers, timeout=60)
            answers[index] = (answer.status_code, answer.json())
        except Exception as error:
            answers[index] = (None, f"{type(error).__name__}: {error}")

    def sweep() -> None:
        for alias, conn in shared.items():
            connections[alias] = conn
        try:
            barrier.wait(timeout=30)
            # As Celery beat starts it; eager: the refresh tasks it queues run
            # here, in this thread, when its transaction commits.
            swept.append(tasks.refresh_sweep.delay().get())
        except Exception as error:
            swept.append(error)
        finally:
            if not shared:
                connections.close_all()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    threads.append(threading.Thread(target=sweep, name=SWEEP_THREAD))
    # The sweep thread uses the shared connection itself: allow it, whatever
    # the live server (started by an earlier test, maybe) allowed then.
    for conn in shared.values():
        conn.inc_thread_sharing()
    try:
        with one_transaction_at_a_time():
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=90)
    finally:
        for conn in shared.values():
            conn.dec_thread_sharing()
    assert not any(thread.is_alive() for thread in threads), "a contender did not finish"
    return answers, swept[0]


@pytest.fixture
def contention(client, make_user, tree, sandbox_oauth, slow_refresh_grant, eager_celery):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    connection = _expired_connection(client, user, tree)
    raw_key = api_keys.issue(owner=user, name="runner", actor=user).raw

    def run():
        return _contend(connection, sandbox_oauth, raw_key)

    yield connection, run
    # The portal's token calls leave their HTTP sessions to the garbage
    # collector; collect them now so that their keep-alive connections close
    # while the live server still runs.
    gc.collect()


def _outline(answers: list) -> list:
    """Statuses and error bodies, never a 200 body (it holds the token)."""
    return [(status, body if status != 200 else "…") for status, body in answers]


def test_ten_reads_and_a_sweep_one_token_request(contention, slow_refresh_grant, task_runs):
    connection, run = contention
    before = vault.read_secret(connection)["access_token"]

    answers, swept = run()

    assert len(slow_refresh_grant) == 1
    assert [status for status, _ in answers] == [200] * CALLERS, _outline(answers)
    tokens = {body["secret"]["access_token"] for _, body in answers}
    assert len(tokens) == 1
    (token,) = tokens
    assert token != before
    assert all(body["headers"]["Authorization"] == f"Bearer {token}" for _, body in answers)
    # The sweep found the connection due and ran its refresh task in its own
    # thread, once, while the one token request was still unanswered.
    assert swept == 1
    refresh_runs = [
        (args, began, state)
        for thread, task, args, began, state in task_runs
        if thread == SWEEP_THREAD and task == tasks.refresh_connection_task.name
    ]
    assert [(args, state) for args, _, state in refresh_runs] == [((connection.pk,), "SUCCESS")]
    assert refresh_runs[0][1] < slow_refresh_grant[0] + TOKEN_DELAY_SECONDS

    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert refresh.is_fresh(connection)
    assert vault.read_secret(connection)["access_token"] == token
    reads = AuditRecord.objects.filter(
        action=AuditRecord.Action.CREDENTIALS_READ, target_id=str(connection.pk)
    )
    assert reads.count() == CALLERS
    assert set(reads.values_list("job_id", flat=True)) == {f"job-{i}" for i in range(CALLERS)}


def test_without_the_guard_several_token_requests(contention, slow_refresh_grant, monkeypatch):
    _, run = contention
    # As tests/connections/refresh_contender.py --bypass: every caller gets the
    # lease (monkeypatch fails loudly should connections.refresh rename it).
    monkeypatch.setattr(refresh, "_take_lease", lambda *args: True)

    run()

    assert len(slow_refresh_grant) > 1
