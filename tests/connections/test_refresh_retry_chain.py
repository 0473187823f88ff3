"""A long provider outage is handled, not a storm (docs/operations.md, "Token
refresh"): while a connection's refresh retries with backoff, the sweep leaves
it alone, so one connection has one retry chain and the provider sees the
documented backoff: 10, 20, 40 ... s (capped at MAX_BACKOFF_SECONDS), plus up
to 5 s of jitter, at most 1 + MAX_RETRIES token requests per chain.

The clock is simulated: ``timezone.now`` answers the simulation's time, the
refresh sweep runs every PORTAL_REFRESH_SWEEP_SECONDS of it, and the task
messages it sends (``apply_async``, ``retry``) are kept here instead of in a
broker and run when their countdown is reached. The token endpoint is the
real Sandbox authorization server (django-oauth-toolkit) in the live server,
answering 503 during the outage; every refresh request that reaches it is
counted, with the simulated time it arrived at.

With the queued mark cleared as soon as a retry was sent (the behaviour
before), every sweep started another chain: about 11 chains and 50 token
requests in the ten minutes, some under a second apart.
``test_without_the_hold_each_sweep_starts_another_chain`` keeps showing it.
"""

from __future__ import annotations

import gc
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise

import pytest
from celery.exceptions import Retry
from django.http import HttpResponse
from django.utils import timezone

from connections import refresh, tasks, vault
from connections.models import Connection, ConnectionEvent, ConnectionState
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import assign

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SWEEP = 60  # PORTAL_REFRESH_SWEEP_SECONDS, as in production
JITTER = 60  # PORTAL_REFRESH_JITTER_SECONDS
LEASE = 60  # PORTAL_REFRESH_LEASE_SECONDS
OUTAGE = 600  # ten minutes of 503 from the token endpoint
BACKOFF_JITTER = 5  # backoff() adds up to this much


@dataclass
class Message:
    """A task message waiting in the (simulated) broker."""

    due: float  # simulated seconds since the start
    ids: tuple[int, ...]
    retries: int
    chains: dict[int, int]  # connection id -> which of its chains this message continues


@dataclass
class TokenRequest:
    at: float
    connection: int | None
    chain: int | None
    status: int


@dataclass
class Outage:
    """Simulated time, the messages the portal sent, and the token endpoint
    (failing with ``failure`` until ``until``)."""

    until: float = OUTAGE
    failure: str = "unavailable"  # or "invalid_grant"
    t: float = 0.0
    queue: list[Message] = field(default_factory=list)
    chains: Counter = field(default_factory=Counter)  # connection id -> chains started
    chain_starts: list[tuple[float, int]] = field(default_factory=list)
    requests: list[TokenRequest] = field(default_factory=list)
    owners: dict[str, int] = field(default_factory=dict)  # refresh token -> connection id
    running: Message | None = None
    lose_retries: int = 0  # retry messages to lose (a broker that dropped them)
    lose_sweeps: int = 0  # the sweep's messages to lose (their worker was killed)
    lost: list[Message] = field(default_factory=list)

    # --- the broker -------------------------------------------------------------

    def apply_async(self, args, kwargs=None, *, countdown=0, retries=0, **options):
        ids = tuple(args)
        if retries:  # a connection of a task of several, retried alone
            chains = {cid: self.running.chains[cid] for cid in ids}
        else:  # the sweep: a new chain for each connection
            chains = {}
            for cid in ids:
                self.chains[cid] += 1
                chains[cid] = self.chains[cid]
                self.chain_starts.append((self.t, cid))
        self._send(Message(self.t + countdown, ids, retries, chains))

    def retry(self, *, countdown, **options):
        message = self.running
        self._send(Message(self.t + countdown, message.ids, message.retries + 1, message.chains))
        return Retry("retry scheduled")

    def _send(self, message: Message) -> None:
        if message.retries and self.lose_retries:
            self.lose_retries -= 1
            self.lost.append(message)
        elif not message.retries and self.lose_sweeps:
            self.lose_sweeps -= 1
            self.lost.append(message)
        else:
            self.queue.append(message)

    def deliver(self, message: Message) -> None:
        task = tasks.refresh_connection_task
        self.running = message
        task.push_request(retries=message.retries, args=list(message.ids))
        try:
            task.run(*message.ids)
        except Retry:
            pass
        finally:
            task.pop_request()
            self.running = None

    def run(self, until: float) -> None:
        """Sweep every SWEEP seconds and deliver each message when due, up to ``until``."""
        next_sweep = math.ceil(self.t / SWEEP) * SWEEP
        while True:
            soonest = min(self.queue, key=lambda m: m.due, default=None)
            at = min(next_sweep, soonest.due if soonest else math.inf)
            if at > until:
                self.t = until
                return
            self.t = max(self.t, at)
            if soonest is None or next_sweep <= soonest.due:
                tasks.refresh_sweep.run()
                next_sweep += SWEEP
            else:
                self.queue.remove(soonest)
                self.deliver(soonest)

    # --- the token endpoint ---------------------------------------------------------

    def token_endpoint(self, original):
        def post(view, request, *args, **kwargs):
            if request.POST.get("grant_type") != "refresh_token":
                return original(view, request, *args, **kwargs)
            owner = self.owners.get(request.POST.get("refresh_token", ""))
            if self.t < self.until and self.failure == "unavailable":
                response = HttpResponse("<h1>Service Unavailable</h1>", status=503)
            elif self.t < self.until:
                response = HttpResponse(
                    json.dumps({"error": "invalid_grant"}),
                    status=400,
                    content_type="application/json",
                )
            else:
                response = original(view, request, *args, **kwargs)
                if response.status_code == 200 and owner is not None:
                    self.owners[json.loads(response.content)["refresh_token"]] = owner
            chain = self.running.chains.get(owner) if self.running and owner else None
            self.requests.append(TokenRequest(self.t, owner, chain, response.status_code))
            return response

        return post

    # --- what the provider saw ----------------------------------------------------

    def requests_of(self, connection_id: int, chain: int | None = None) -> list[TokenRequest]:
        return [
            r
            for r in self.requests
            if r.connection == connection_id and (chain is None or r.chain == chain)
        ]


@pytest.fixture
def outage(monkeypatch, settings, sandbox_oauth):
    from oauth2_provider import views

    settings.PORTAL_REFRESH_SWEEP_SECONDS = SWEEP
    settings.PORTAL_REFRESH_JITTER_SECONDS = JITTER
    settings.PORTAL_REFRESH_LEASE_SECONDS = LEASE
    settings.PORTAL_REFRESH_LEAD_SECONDS = 300
    world = Outage()
    started = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: started + timedelta(seconds=world.t))
    task = tasks.refresh_connection_task
    monkeypatch.setattr(task, "apply_async", world.apply_async)
    monkeypatch.setattr(task, "retry", world.retry)
    monkeypatch.setattr(views.TokenView, "post", world.token_endpoint(views.TokenView.post))
    yield world
    # The portal's token calls leave their HTTP sessions to the garbage
    # collector; collect them now so that their keep-alive connections close
    # while the live server still runs.
    gc.collect()


def _connect(client, make_user, tree, outage, count: int) -> list[Connection]:
    """``count`` connections made through the authorization-code flow at the
    Sandbox server, each with an access token that expires in 4 minutes (so
    due at once: the lead time is 5)."""
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    for n in range(count):
        response = start(client, tree["finance"], "oauth2_authorization_code", {"name": f"C{n}"})
        client.get(local(approve(client, continue_url(response))))
    connections = list(Connection.objects.order_by("pk"))
    assert len(connections) == count
    Connection.objects.update(token_expires_at=timezone.now() + timedelta(minutes=4))
    for connection in connections:
        outage.owners[vault.read_secret(connection)["refresh_token"]] = connection.pk
    return connections


def _spacing(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in pairwise(times)]


def _assert_backoff(times: list[float]) -> None:
    """The gaps between one chain's token requests are backoff()'s: 10 * 2**n
    seconds capped at MAX_BACKOFF_SECONDS, plus up to 5 s of jitter."""
    for n, gap in enumerate(_spacing(times)):
        low = min(tasks.MAX_BACKOFF_SECONDS, 10 * 2**n)
        high = min(tasks.MAX_BACKOFF_SECONDS, 10 * 2**n + BACKOFF_JITTER)
        assert low <= gap <= high, f"request {n + 1} came {gap} s after the one before: {times}"


def _assert_refreshed_and_connected(connection: Connection) -> None:
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert refresh.is_fresh(connection)
    assert connection.refresh_queued_until is None
    assert connection.refresh_lease_owner == ""
    refreshed = ConnectionEvent.objects.filter(
        connection=connection, kind=ConnectionEvent.Kind.REFRESHED
    )
    assert refreshed.count() == 1


@pytest.mark.parametrize("count", [1, 2], ids=["one-per-task", "two-in-one-task"])
def test_ten_minute_outage_one_chain_with_backoff(
    client, make_user, tree, outage, monkeypatch, count
):
    """Ten minutes of 503 with the sweep running every minute: one retry chain
    per connection, its token requests spaced as backoff() says, no more than
    the chain's retries; once the provider is back the connection refreshes
    and stays Connected. ``two-in-one-task``: the sweep sends both connections
    in one task (as it does when many are due), each retried alone."""
    if count > 1:
        monkeypatch.setattr(tasks, "TASKS_AT_LEAST", 1)  # per_task(2) == 2
    connections = _connect(client, make_user, tree, outage, count)

    outage.run(until=OUTAGE + 300)

    for connection in connections:
        seen = outage.requests_of(connection.pk)
        times = [r.at for r in seen]
        during = [r for r in seen if r.at < OUTAGE]
        assert outage.chains[connection.pk] == 1, (
            f"{outage.chains[connection.pk]} chains, {len(seen)} token requests "
            f"({len(during)} during the outage) at {times}"
        )
        assert 1 <= len(during) <= 1 + tasks.MAX_RETRIES, times
        assert [r.status for r in during] == [503] * len(during)
        _assert_backoff(times)
        # The provider is back: the chain's next attempt refreshed it, and
        # that was the last request.
        assert seen[-1].at >= OUTAGE and seen[-1].status == 200, times
        assert len(seen) == len(during) + 1
        _assert_refreshed_and_connected(connection)
    assert len(outage.chain_starts) == count
    assert outage.queue == []  # nothing left waiting


def test_without_the_hold_each_sweep_starts_another_chain(
    client, make_user, tree, outage, monkeypatch
):
    """The test above can fail: the same ten minutes with the queued mark
    cleared as soon as a retry is sent (as it was before), and the sweep
    starts another chain every minute; the provider gets several times what
    one chain sends, seconds apart."""
    monkeypatch.setattr(
        tasks,
        "_hold_for_retry",
        lambda connection_id, countdown: Connection.objects.filter(pk=connection_id).update(
            refresh_queued_until=None
        ),
    )
    (connection,) = _connect(client, make_user, tree, outage, 1)

    outage.run(until=OUTAGE + 300)

    during = [r.at for r in outage.requests_of(connection.pk) if r.at < OUTAGE]
    assert outage.chains[connection.pk] >= 5
    assert len(during) > 2 * (1 + tasks.MAX_RETRIES)
    assert min(_spacing(during)) < 10


@pytest.mark.parametrize("count", [1, 2], ids=["one-per-task", "two-in-one-task"])
def test_a_longer_outage_chains_follow_one_another(
    client, make_user, tree, outage, monkeypatch, count
):
    """Half an hour of 503: a chain whose retries are spent ends and clears
    the mark, so the next sweep starts a new chain; chains never overlap and
    each keeps the backoff."""
    if count > 1:
        monkeypatch.setattr(tasks, "TASKS_AT_LEAST", 1)
    outage.until = 1800
    connections = _connect(client, make_user, tree, outage, count)

    outage.run(until=outage.until + 900)

    for connection in connections:
        chains = outage.chains[connection.pk]
        assert chains >= 2
        last_end = None
        for chain in range(1, chains + 1):
            times = [r.at for r in outage.requests_of(connection.pk, chain)]
            _assert_backoff(times)
            if chain < chains:  # spent: the first attempt and every retry failed
                assert len(times) == 1 + tasks.MAX_RETRIES, times
            if last_end is not None:
                # Started by a sweep after the chain before ended, not during it.
                assert last_end < times[0] <= last_end + SWEEP + JITTER, (last_end, times)
            last_end = times[-1]
        _assert_refreshed_and_connected(connection)


def test_a_lost_retry_holds_the_connection_only_a_while(client, make_user, tree, outage):
    """The first retry's message is lost (a broker that dropped it): the
    connection stays queued only until a little after that retry's countdown
    (PORTAL_REFRESH_LEASE_SECONDS * 2), then a sweep starts a new chain."""
    (connection,) = _connect(client, make_user, tree, outage, 1)
    outage.lose_retries = 1

    outage.run(until=OUTAGE + 600)

    (lost,) = outage.lost
    first = outage.requests_of(connection.pk, 1)
    assert len(first) == 1
    countdown = lost.due - first[0].at
    held_until = first[0].at + countdown + 2 * LEASE
    assert outage.chains[connection.pk] == 2
    (restarted,) = [at for at, cid in outage.chain_starts[1:] if cid == connection.pk]
    assert held_until <= restarted <= held_until + SWEEP
    _assert_refreshed_and_connected(connection)


def test_a_killed_workers_connection_is_queued_again_when_its_mark_lapses(
    client, make_user, tree, outage
):
    """The sweep's task never runs (its worker was killed; Redis would deliver
    it again only after the visibility timeout): the sweep queues the
    connection again once its mark lapses (the jitter plus two leases), and
    that task refreshes it. No outage here."""
    outage.until = 0
    (connection,) = _connect(client, make_user, tree, outage, 1)
    outage.lose_sweeps = 1

    outage.run(until=600)

    assert len(outage.lost) == 1
    assert outage.chains[connection.pk] == 2
    (first, again) = [at for at, cid in outage.chain_starts if cid == connection.pk]
    lapsed = first + JITTER + 2 * LEASE
    assert lapsed <= again <= lapsed + SWEEP
    assert [r.status for r in outage.requests_of(connection.pk)] == [200]
    _assert_refreshed_and_connected(connection)


def test_a_refused_refresh_ends_the_chain(client, make_user, tree, outage):
    """``invalid_grant``: no retry, the mark is cleared, and the connection
    needs reconnecting, so no sweep picks it again."""
    (connection,) = _connect(client, make_user, tree, outage, 1)
    outage.failure = "invalid_grant"

    outage.run(until=OUTAGE)

    assert [r.status for r in outage.requests_of(connection.pk)] == [400]
    assert outage.chains[connection.pk] == 1
    assert outage.queue == []
    connection.refresh_from_db()
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    assert connection.refresh_queued_until is None
