"""A poll meets a provider's limits: 429 and 503 with Retry-After hold every
trigger of the connection until then, a 429 without it backs off
exponentially, and an OAuth 2.0 access token the provider refuses goes
through the refresh path once, then marks the connection Needs reconnect.

The provider is the Sandbox (records API and OAuth 2.0 server, over HTTP in
the live server) behind a small gate served here on 127.0.0.1, which passes
every request through unless the test told it how to answer, and counts
what reached it. Time is moved by moving the stored due times back."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone

from connections import health, sandbox
from connections.models import (
    Connection,
    ConnectionEvent,
    ConnectionState,
    Job,
    Trigger,
    TriggerEvent,
)
from connections.triggers import configure, processes, tasks
from connections.triggers.polling import poll_trigger
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import assign

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

RECORDS = "/sandbox/api/records"
TOKEN = "/sandbox/oauth/token/"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "server",
    "date",
}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    authorization: str = field(repr=False)


@dataclass
class Rule:
    path: str
    status: int
    headers: dict
    times: int | None  # None: every time


class Gate:
    """The provider as the portal sees it: the Sandbox behind this server,
    which answers what the test queued (``answer``) and passes the rest."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(
        self, path: str, status: int, headers: dict | None = None, *, times: int | None = 1
    ) -> None:
        with self.lock:
            self.rules.append(Rule(path, status, headers or {}, times))

    def requests_to(self, path: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _rule_for(self, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.path == path and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = gate._rule_for(path)
                if rule is not None:
                    status = rule.status
                    answer = json.dumps({"error": f"The gate answers {status}."}).encode()
                    headers = {"Content-Type": "application/json", **rule.headers}
                else:
                    forwarded = {
                        k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP
                    }
                    upstream = requests.request(
                        self.command,
                        gate.upstream + self.path,
                        headers=forwarded,
                        data=body,
                        allow_redirects=False,
                        timeout=20,
                    )
                    status, answer = upstream.status_code, upstream.content
                    headers = {
                        k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                    }
                with gate.lock:
                    gate.seen.append(
                        Seen(self.command, path, status, self.headers.get("Authorization", ""))
                    )
                self._reply(status, headers, answer)

            do_GET = do_POST = _handle

        return Handler


@pytest.fixture
def gate(sandbox_api, settings):
    """The Sandbox, as every connection's provider, behind the gate."""
    served = Gate(sandbox_api.url)
    settings.PORTAL_BASE_URL = served.url
    yield served
    served.close()


@pytest.fixture
def sent(monkeypatch):
    """What the tasks would send to the broker, kept here instead."""
    calls = []
    for task in (tasks.poll_triggers_task, tasks.deliver_jobs_task):
        monkeypatch.setattr(task, "delay", lambda *ids, _task=task: calls.append((_task.name, ids)))
    return calls


def travel(seconds: float) -> None:
    """Move time ``seconds`` on, as the rows see it: every stored due time
    and hold comes that much nearer."""
    back = timedelta(seconds=seconds)
    for name in ("backoff_until", "next_poll_at", "poll_queued_until"):
        Trigger.objects.filter(**{f"{name}__isnull": False}).update(**{name: F(name) - back})
    Connection.objects.filter(next_check_at__isnull=False).update(
        next_check_at=F("next_check_at") - back
    )
    from connections import models

    if hasattr(models, "ProviderHold"):  # the holds of per-app limits, when the portal has them
        models.ProviderHold.objects.update(until=F("until") - back)


def make_due(*triggers: Trigger) -> None:
    Trigger.objects.filter(pk__in=[t.pk for t in triggers]).update(next_poll_at=timezone.now())


def says_rate_limited(message: str, status: int) -> bool:
    return str(status) in message and bool(
        re.search(r"limit|retry-after|too many|unavailable", message, re.IGNORECASE)
    )


@pytest.fixture
def three_triggers(gate, make_trigger, add_record):
    """Three triggers of one connection, each past its first poll (made
    through the gate, which let it pass), and due again."""
    made = [
        make_trigger(),
        make_trigger(filters={"title_contains": "invoice"}),
        make_trigger(filters={"title_contains": "order"}),
    ]
    for trigger in made:
        assert poll_trigger(trigger.pk).status == "ok"
    make_due(*made)
    with gate.lock:
        gate.seen.clear()
    return made


def http_date_in(seconds: int) -> tuple[str, datetime]:
    moment = (timezone.now() + timedelta(seconds=seconds)).replace(microsecond=0)
    return format_datetime(moment, usegmt=True), moment


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "120"), (503, "http-date")],
    ids=["429-seconds", "503-http-date"],
)
def test_retry_after_holds_every_trigger_of_the_connection(
    gate, three_triggers, add_record, sent, connection, status, retry_after
):
    first, *others = three_triggers
    started = timezone.now()
    if retry_after == "http-date":
        retry_after, moment = http_date_in(121)  # whole seconds: at least 120 s from `started`
        assert moment >= started + timedelta(seconds=120)
    gate.answer(RECORDS, status, {"Retry-After": retry_after})

    outcome = poll_trigger(first.pk, if_due=True)

    assert outcome.status in ("failed", "waiting")
    assert says_rate_limited(outcome.message, status), outcome.message
    assert [seen.status for seen in gate.requests_to(RECORDS)] == [status]
    held = list(Trigger.objects.filter(connection=connection).order_by("pk"))
    assert len(held) == 3
    for trigger in held:
        assert trigger.backoff_until >= started + timedelta(seconds=120), trigger
        assert trigger.backoff_until <= timezone.now() + timedelta(seconds=130)  # not more
        assert trigger.next_poll_at >= trigger.backoff_until, trigger
        assert says_rate_limited(trigger.last_error, status), trigger.last_error
    latest = max(trigger.backoff_until for trigger in held)
    earliest = min(trigger.backoff_until for trigger in held)

    # Not before then: not by the sweep, not as due, not by Run poll now.
    assert not tasks.due_for_poll(timezone.now()).filter(connection=connection).exists()
    assert not tasks.due_for_poll(earliest - timedelta(seconds=1)).exists()
    assert tasks.poll_sweep() == 0 and sent == []
    for trigger in others:
        assert poll_trigger(trigger.pk, if_due=True).status in ("waiting", "not_due")
        run_now = poll_trigger(trigger.pk)
        assert run_now.status == "waiting"
        assert says_rate_limited(run_now.message, status), run_now.message
    assert len(gate.requests_to(RECORDS)) == 1  # nothing more reached the provider
    # Once the time has come they are due.
    due = set(tasks.due_for_poll(latest + timedelta(seconds=1)).values_list("pk", flat=True))
    assert due == {trigger.pk for trigger in held}

    travel((latest - timezone.now()).total_seconds() + 1)
    add_record("Invoice 7")
    assert tasks.poll_sweep() == 3
    polled = [ids for name, ids in sent if name == tasks.poll_triggers_task.name]
    assert sorted(pk for ids in polled for pk in ids) == [t.pk for t in held]
    for ids in polled:
        tasks.poll_triggers_task(*ids)  # as the worker runs them
    for trigger in Trigger.objects.filter(connection=connection):
        assert trigger.last_poll_ok is True, trigger.last_error
        assert trigger.backoff_until is None
        assert trigger.last_error == ""
        assert trigger.consecutive_failures == 0
        assert trigger.next_poll_at > timezone.now()
    # The record made meanwhile fired once, for the triggers it matches.
    assert sorted(TriggerEvent.objects.values_list("trigger_id", flat=True)) == sorted(
        [held[0].pk, held[1].pk]
    )
    assert [seen.status for seen in gate.requests_to(RECORDS)][1:] == [200, 200, 200]


def test_retry_after_stops_the_rest_of_the_batch_on_that_connection(
    gate, three_triggers, connection, sent
):
    """One poll task with several triggers of one connection (the sweep
    batches them when many are due): after the first is told 429 with
    Retry-After, the others send nothing."""
    gate.answer(RECORDS, 429, {"Retry-After": "120"}, times=None)
    started = timezone.now()
    tasks.poll_triggers_task(*[trigger.pk for trigger in three_triggers])
    for trigger in Trigger.objects.filter(connection=connection):
        assert trigger.backoff_until >= started + timedelta(seconds=120)
    assert len(gate.requests_to(RECORDS)) == 1


def test_a_429_without_retry_after_backs_off_exponentially(gate, make_trigger, add_record):
    trigger = make_trigger()
    assert poll_trigger(trigger.pk).status == "ok"
    interval = health.effective_polling_interval(trigger.connection)
    gate.answer(RECORDS, 429, times=2)
    waits = []
    for failures in (1, 2):
        make_due(trigger)
        outcome = poll_trigger(trigger.pk, if_due=True)
        assert outcome.status == "failed", outcome
        assert "429" in outcome.message
        trigger.refresh_from_db()
        assert trigger.consecutive_failures == failures
        assert trigger.last_poll_ok is False and trigger.last_error == outcome.message
        assert trigger.next_poll_at >= trigger.backoff_until
        wait = (trigger.backoff_until - trigger.last_polled_at).total_seconds()
        # The interval doubled per failure, with at most 10% jitter.
        base = interval * 2 ** (failures - 1)
        assert base - 1 <= wait <= base * 1.1 + 1, (failures, wait, interval)
        waits.append(wait)
        assert not tasks.due_for_poll(trigger.backoff_until - timedelta(seconds=1)).exists()
        assert poll_trigger(trigger.pk).status == "waiting"
        travel(wait + 1)
    assert waits[1] > waits[0] * 1.7
    assert len(gate.requests_to(RECORDS)) == 3  # the first poll and the two refused
    add_record("Invoice 9")
    outcome = poll_trigger(trigger.pk, if_due=True)
    assert (outcome.status, outcome.fired) == ("ok", 1)
    trigger.refresh_from_db()
    assert trigger.backoff_until is None and trigger.consecutive_failures == 0
    assert trigger.last_error == ""


# --- OAuth 2.0: the provider refuses the access token --------------------------


@pytest.fixture
def oauth_connection(gate, sandbox_oauth, settings, client, make_user, tree):
    """ada's Sandbox connection made through the real authorization-code
    flow (with the live server as the portal's address), then polled through
    the gate."""
    settings.PORTAL_BASE_URL = sandbox_oauth.url
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "Records"})
    client.get(local(approve(client, continue_url(response))))
    connection = Connection.objects.get(auth_type="oauth2_authorization_code")
    assert connection.state == ConnectionState.CONNECTED
    settings.PORTAL_BASE_URL = gate.url
    return connection


@pytest.fixture
def oauth_trigger(oauth_connection, tree):
    made = processes.create_process(folder=tree["finance"], name="Queue", job_queue=True)
    trigger = configure.create_trigger(
        connection=oauth_connection, event_key="record_created", filters={}, process=made.process
    )
    assert poll_trigger(trigger.pk).status == "ok"  # from now on
    return trigger


def expire_access_tokens_at_the_provider() -> None:
    """The Sandbox stops accepting the access tokens it gave (the portal still
    takes them for fresh: their expiry it stored is an hour away)."""
    from oauth2_provider.models import get_access_token_model

    get_access_token_model().objects.update(expires=timezone.now() - timedelta(minutes=1))


def refreshed(connection) -> int:
    return ConnectionEvent.objects.filter(
        connection=connection, kind=ConnectionEvent.Kind.REFRESHED
    ).count()


def test_a_refused_access_token_is_refreshed_once_and_the_poll_goes_on(
    oauth_connection, oauth_trigger, gate, token_requests
):
    version = Connection.objects.get(pk=oauth_connection.pk).token_version
    expire_access_tokens_at_the_provider()
    sandbox.add_record(user=get_user_model().objects.get(username="ada"), title="After refusal")

    outcome = poll_trigger(oauth_trigger.pk, if_due=False)

    assert (outcome.status, outcome.fired) == ("ok", 1), outcome.message
    assert token_requests.count("refresh_token") == 1
    connection = Connection.objects.get(pk=oauth_connection.pk)
    assert connection.token_version == version + 1
    assert refreshed(connection) == 1
    assert connection.state == ConnectionState.CONNECTED
    # The same request twice: refused with the old token, answered with the new one.
    refused, answered = gate.requests_to(RECORDS)[-2:]
    assert (refused.status, answered.status) == (401, 200)
    assert refused.authorization != answered.authorization
    assert [seen.status for seen in gate.requests_to(TOKEN)] == [200]
    assert Job.objects.filter(trigger=oauth_trigger).count() == 1
    oauth_trigger.refresh_from_db()
    assert oauth_trigger.last_poll_ok is True and oauth_trigger.last_error == ""


def test_a_refreshed_token_refused_too_needs_reconnect_and_pauses_the_trigger(
    oauth_connection, oauth_trigger, gate, token_requests
):
    version = Connection.objects.get(pk=oauth_connection.pk).token_version
    gate.answer(RECORDS, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, times=None)
    before = len(gate.requests_to(RECORDS))

    outcome = poll_trigger(oauth_trigger.pk)

    assert outcome.status == "failed"
    assert "401" in outcome.message and "reconnect" in outcome.message.lower()
    assert token_requests.count("refresh_token") == 1  # one refresh, no loop
    connection = Connection.objects.get(pk=oauth_connection.pk)
    assert connection.token_version == version + 1
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    tried = gate.requests_to(RECORDS)[before:]
    assert [seen.status for seen in tried] == [401, 401]
    assert tried[0].authorization != tried[1].authorization  # the refreshed token, refused too
    oauth_trigger.refresh_from_db()
    assert oauth_trigger.last_error == outcome.message
    assert oauth_trigger.backoff_until > timezone.now()

    # The next poll, once due: paused with the connection, nothing sent.
    travel((oauth_trigger.backoff_until - timezone.now()).total_seconds() + 1)
    assert tasks.due_for_poll().filter(pk=oauth_trigger.pk).exists()
    paused = poll_trigger(oauth_trigger.pk, if_due=True)
    assert paused.status == "paused"
    assert "needs reconnecting" in paused.message and connection.name in paused.message
    oauth_trigger.refresh_from_db()
    assert oauth_trigger.last_error == paused.message
    assert oauth_trigger.last_poll_ok is None
    assert len(gate.requests_to(RECORDS)) == before + 2
    assert token_requests.count("refresh_token") == 1
    assert not TriggerEvent.objects.filter(trigger=oauth_trigger).exists()
