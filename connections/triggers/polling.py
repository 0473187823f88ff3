"""Polls of triggers, a batch at a time (``connections.engine``): the event's
requests (``connections.catalog.events``) sent through the batch's guarded
session with the connection's working credential, the answers read, and
each page's new events, their jobs and the cursor stored in one transaction
(``outbox``). What the polls of a batch record is written together.

- One poll at a time per trigger: a lease taken with a conditional UPDATE.
- A disabled connection, or one that needs reconnecting or was never
  connected, pauses its triggers: the poll sends nothing and says why.
- A 401 goes through the refresh path once (OAuth 2.0), then marks the
  connection Needs reconnect, as a health check would.
- 429 and 503 with Retry-After hold every trigger of the connection (and
  its health check) until then, and the host when the connector's limits
  are per app (``connections.rate_limits``); other failures back off
  exponentially, with jitter, and are recorded on the trigger.
- A successful poll of a Connected connection counts as its health check:
  the next health check moves one polling interval on.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from connections import egress, health, rate_limits, refresh
from connections.catalog import ConnectorMissing, connector_of
from connections.catalog.events import (
    EventAnswerError,
    EventRequestError,
    build_poll_request,
    read_poll_answer,
)
from connections.catalog.schema import OAUTH2_KINDS
from connections.engine import Batch, host_of, update_grouped
from connections.models import Connection, ConnectionState, Trigger, TriggerPoll
from connections.runtime import Credentials, Unresolved, credentials_for
from connections.triggers import outbox
from connections.unreadable import CredentialUnreadable

log = logging.getLogger(__name__)

# A poll that keeps failing waits the polling interval, doubled after each
# failure, at most this long (or the interval, when that is longer).
MAX_BACKOFF_SECONDS = 3600
BUSY = "Another poll of this trigger is running."

Status = Literal["ok", "paused", "failed", "waiting", "busy", "not_due", "disabled", "gone"]


@dataclass(frozen=True)
class PollOutcome:
    """What a poll did: ``ok`` (``fired`` events stored), ``paused`` (the
    connection cannot be used: ``message`` says why), ``failed`` (recorded
    on the trigger, retried with backoff), ``waiting`` (rate limited or
    backing off until ``until``), ``busy`` (another poll of it is running),
    ``not_due``, ``disabled`` or ``gone``."""

    status: Status
    fired: int = 0
    message: str = ""
    until: datetime | None = None


@dataclass
class Progress:
    """What a poll has stored so far (pages stored stay stored when a later one fails)."""

    started_at: datetime
    fired: int = 0
    pages: int = 0


class PollFailed(Exception):
    def __init__(self, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def paused_because(connection: Connection) -> str:
    """Why the connection's triggers do not poll, or "" when they may."""
    if not connection.is_enabled:
        return f"Paused: {connection.name} is disabled."
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        return f"Paused: {connection.name} needs reconnecting."
    if connection.state == ConnectionState.NOT_CONNECTED:
        return f"Paused: {connection.name} is not connected yet."
    return ""


def failure_backoff(interval: int, failures: int) -> timedelta:
    """How long after its ``failures``-th failure in a row a trigger polls
    again: the interval, doubled each time, capped, plus up to 10% jitter."""
    cap = max(MAX_BACKOFF_SECONDS, interval)
    seconds = min(cap, interval * 2 ** max(0, failures - 1))
    return timedelta(seconds=seconds * random.uniform(1.0, 1.1))  # noqa: S311


def _lease_seconds(count: int) -> float:
    """The lease of a batch of ``count`` polls: each may take a request's
    whole deadline, a refresh may come first. A poll that outlives it stores
    nothing more once another took over (``outbox.LeaseLost``); a worker that
    dies holds its triggers this long at most."""
    return settings.PORTAL_HTTP_TOTAL_TIMEOUT * (count + 2) + 60


def poll_trigger(
    trigger_id: int,
    *,
    if_due: bool = False,
    on_new_jobs: Callable[[list[int]], None] | None = None,
) -> PollOutcome:
    """Poll one trigger now (Run poll now; ``if_due``: only if its poll is
    still due): a batch of one."""
    with Batch() as batch:
        return poll_triggers([trigger_id], batch, if_due=if_due, on_new_jobs=on_new_jobs)[
            trigger_id
        ]


def poll_triggers(
    trigger_ids: Sequence[int],
    batch: Batch,
    *,
    if_due: bool = False,
    on_new_jobs: Callable[[list[int]], None] | None = None,
) -> dict[int, PollOutcome]:
    """Poll these triggers (``if_due``: those still due, as the sweep asks),
    one after the other through the batch's sessions. See the module's
    docstring for what it guarantees. ``on_new_jobs``: called with the ids of
    the jobs each page made, once that page has committed (the tasks enqueue
    their deliveries; without it the delivery sweep finds them).

    Statements: one UPDATE takes the leases of all, one SELECT reads them
    with their connections and credentials; a page that finds new items
    stores them in its own transaction (the outbox); then an UPDATE per
    distinct result (``engine.update_grouped``) writes the triggers' results
    and hands their leases back, one INSERT their lines of history, one
    UPDATE per polling interval the health checks they stand for."""
    now = timezone.now()
    owner = uuid.uuid4().hex
    leased = _lease(trigger_ids, owner, now, if_due=if_due)
    outcomes = {} if len(leased) == len(trigger_ids) else _not_polled(trigger_ids, leased, now)
    polls: list[_Poll] = []
    # A Retry-After holds the connection's other triggers of this batch too.
    held: dict[int, _Poll] = {}
    for trigger in leased:
        poll = _Poll(trigger, batch.interval(trigger.connection), Progress(timezone.now()))
        limited = held.get(trigger.connection_id)
        if limited is not None:
            remaining = (limited.until - timezone.now()).total_seconds()
            poll.retry_after = max(1, int(remaining) + 1)
            poll.outcome = PollOutcome("failed", message=limited.outcome.message)
        else:
            poll.outcome = _poll_one(poll, batch, owner, on_new_jobs)
            if poll.retry_after is not None:
                poll.until = timezone.now() + timedelta(seconds=poll.retry_after)
                held[trigger.connection_id] = poll
        polls.append(poll)
    _record(polls, owner)
    outcomes.update((poll.trigger.pk, poll.outcome) for poll in polls)
    return outcomes


@dataclass
class _Poll:
    trigger: Trigger
    interval: int
    progress: Progress
    outcome: PollOutcome | None = None
    retry_after: int | None = None
    until: datetime | None = None  # when a Retry-After ends


def _lease(trigger_ids: Sequence[int], owner: str, now: datetime, *, if_due: bool) -> list[Trigger]:
    """Take the poll lease of each trigger that is enabled, not being polled,
    not backing off (and due, with ``if_due``), in one UPDATE; then read
    those with their connection, its credential and the process."""
    free = Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now)
    ready = Q(backoff_until__isnull=True) | Q(backoff_until__lte=now)
    rows = Trigger.objects.filter(free, ready, pk__in=trigger_ids, enabled=True)
    if if_due:
        rows = rows.filter(next_poll_at__lte=now)
    seconds = _lease_seconds(len(trigger_ids))
    if not rows.update(poll_lease_owner=owner, poll_lease_until=now + timedelta(seconds=seconds)):
        return []
    return list(
        Trigger.objects.select_related("connection__credential", "process").filter(
            pk__in=trigger_ids, poll_lease_owner=owner
        )
    )


def _not_polled(
    trigger_ids: Sequence[int], leased: list[Trigger], now: datetime
) -> dict[int, PollOutcome]:
    """Why the triggers not leased were not polled (one query); their queued
    mark cleared (one UPDATE)."""
    rest = set(trigger_ids) - {trigger.pk for trigger in leased}
    outcomes = dict.fromkeys(rest, PollOutcome("gone"))
    rows = Trigger.objects.filter(pk__in=rest)
    for row in rows.only("enabled", "next_poll_at", "backoff_until", "last_error"):
        if not row.enabled:
            outcomes[row.pk] = PollOutcome("disabled", message="The trigger is disabled.")
        elif row.backoff_until and row.backoff_until > now:
            message = row.last_error or "Backing off."
            outcomes[row.pk] = PollOutcome("waiting", message=message, until=row.backoff_until)
        elif row.next_poll_at is None or row.next_poll_at > now:
            outcomes[row.pk] = PollOutcome("not_due")
        else:
            outcomes[row.pk] = PollOutcome(
                "busy", message="Another poll of this trigger is running."
            )
    rows.update(poll_queued_until=None)
    return outcomes


def _poll_one(
    poll: _Poll,
    batch: Batch,
    owner: str,
    on_new_jobs: Callable[[list[int]], None] | None,
) -> PollOutcome:
    trigger, connection = poll.trigger, poll.trigger.connection
    reason = paused_because(connection)
    if reason:
        return PollOutcome("paused", message=reason)
    try:
        connector = connector_of(connection)
        event = connector.event(trigger.event_key)
        if event is None:
            raise PollFailed(f"{connector.name} no longer has the event {trigger.event_key}.")
        _poll(trigger, connection, connector, event, owner, on_new_jobs, poll.progress, batch)
    except ConnectorMissing as error:
        return PollOutcome("failed", message=str(error))
    except PollFailed as failure:
        poll.retry_after = failure.retry_after
        return PollOutcome("failed", message=str(failure))
    except outbox.LeaseLost as lost:
        return PollOutcome("busy", message=str(lost))
    except Exception:
        log.exception("Polling trigger %s failed.", trigger.pk)
        return PollOutcome("failed", message="The poll failed unexpectedly; see the portal's log.")
    return PollOutcome("ok", fired=poll.progress.fired)


def _poll(
    trigger: Trigger,
    connection: Connection,
    connector,
    event,
    owner: str,
    on_new_jobs: Callable[[list[int]], None] | None,
    progress: Progress,
    batch: Batch,
) -> None:
    """The requests of one poll; the events stored, counted in ``progress``.
    PollFailed on failure (the cursor then stays where the last stored page
    left it). A page with no new item moves ``trigger.cursor`` in memory
    only: the batch's result writes it."""
    credentials = _credentials(connection)
    session = batch.session(connector)
    page, refreshed = None, False
    try:
        pages = 0
        while pages < event.max_pages:
            try:
                request = build_poll_request(
                    connector,
                    event,
                    auth_kind=connection.auth_type,
                    fields=credentials.fields,
                    filters=trigger.filters,
                    cursor=trigger.cursor or None,
                    page=page,
                    include_existing=trigger.include_existing,
                )
            except EventRequestError as error:
                raise PollFailed(str(error)) from None
            except Exception as error:  # ValidationError of filters changed under it
                raise PollFailed(f"The trigger's filters are no longer valid: {error}") from None
            held = batch.held_until(host_of(request.url))
            if held is not None:
                raise PollFailed(
                    f"{connector.name} is limiting this portal's requests to "
                    f"{host_of(request.url)} until {held:%H:%M:%S} UTC.",
                    retry_after=max(1, int((held - timezone.now()).total_seconds()) + 1),
                )
            response = _send(session, request, credentials)
            status = response.status_code
            if status == 401 and not refreshed and connection.auth_type in OAUTH2_KINDS:
                refreshed = True
                credentials = _refreshed_credentials(connection)
                continue  # the same request, with the new access token
            if status == 401:
                message = (
                    f"{connector.name} refused the credentials (401) when polling {event.name}: "
                    "reconnect the connection."
                )
                refresh.mark_broken(connection, ConnectionState.NEEDS_RECONNECT, message)
                raise PollFailed(message)
            if request.resumed and status in event.cursor.expired_status:
                # The provider forgot the token or page the cursor kept.
                trigger.cursor = request.fallback_cursor() or ""
                break
            retry_after = rate_limits.limited_for(status, response.headers)
            if retry_after is not None:
                message = (
                    f"{connector.name} is limiting requests ({status}): no poll of "
                    f"{connection.name} before {retry_after} s have passed."
                )
                until = timezone.now() + timedelta(seconds=retry_after)
                batch.hold(connector, request.url, until, message)
                raise PollFailed(message, retry_after=retry_after)
            if not 200 <= status < 300:
                said = health._provider_message(response, list(credentials.secret.values()))
                raise PollFailed(
                    f"{connector.name} answered {status} {response.reason or ''}".strip()
                    + (f' to the poll: "{said}"' if said else " to the poll.")
                )
            try:
                answer = response.json()
            except ValueError:
                raise PollFailed(
                    f"{connector.name} answered the poll with something not JSON."
                ) from None
            try:
                result = read_poll_answer(request, answer=answer, headers=response.headers)
            except EventAnswerError as error:
                raise PollFailed(str(error)) from None
            if result.items:
                jobs = outbox.store_page(
                    trigger,
                    lease_owner=owner,
                    items=result.items,
                    cursor=result.cursor,
                    on_new_jobs=on_new_jobs,
                )
                progress.fired += len(jobs)
            else:
                trigger.cursor = result.cursor
            progress.pages += 1
            pages += 1
            page = result.next_page
            if page is None:
                break
    except (egress.EgressDenied, egress.EgressError) as error:
        raise PollFailed(str(error)) from None


def _send(session: egress.EgressSession, request, credentials: Credentials):
    headers = {**request.headers, **credentials.headers}
    params = {**request.params, **credentials.query}
    kwargs = {"params": params, "headers": headers}
    if request.json is not None:
        kwargs["json"] = request.json
    return session.request(request.method, request.url, **kwargs)


def _credentials(connection: Connection) -> Credentials:
    """The connection's working credential (OAuth 2.0: refreshed first when
    due, single-flight), or PollFailed saying why not."""
    try:
        return credentials_for(connection)
    except (Unresolved, refresh.RefreshError, CredentialUnreadable) as error:
        raise PollFailed(str(error)) from None


def _refreshed_credentials(connection: Connection) -> Credentials:
    """After a 401: the token refreshed once through the single-flight path
    (an ``invalid_grant`` marks the connection Needs reconnect there)."""
    try:
        refresh.refresh_connection(connection.pk, force=True)
    except refresh.RefreshError as error:
        raise PollFailed(
            f"The access token was refused and could not be refreshed: {error}"
        ) from None
    connection.refresh_from_db()
    return _credentials(connection)


# What the batch's result writes of each trigger.
RESULT_FIELDS = [
    "cursor",
    "last_polled_at",
    "last_poll_ok",
    "last_poll_items",
    "last_error",
    "consecutive_failures",
    "backoff_until",
    "next_poll_at",
    "poll_queued_until",
    "poll_lease_owner",
    "poll_lease_until",
]
OUTCOMES = {
    "ok": TriggerPoll.Outcome.OK,
    "paused": TriggerPoll.Outcome.PAUSED,
    "failed": TriggerPoll.Outcome.FAILED,
}


def _record(polls: list[_Poll], owner: str) -> None:
    """Each poll's result on its trigger, its lease handed back (one UPDATE
    for the batch, only where the lease is still ``owner``'s), its line in
    the trigger's poll history (one INSERT), a rate limit's hold on the
    connection, and the health checks the successful polls stand for."""
    done = timezone.now()
    recorded = [poll for poll in polls if poll.outcome.status in OUTCOMES]
    if not recorded:
        return
    checked: dict[int, int] = {}  # connection id: interval, for Connected ones polled fine
    for poll in recorded:
        trigger, outcome = poll.trigger, poll.outcome
        trigger.last_polled_at = done
        trigger.last_poll_items = poll.progress.fired
        trigger.last_error = outcome.message[:500]
        trigger.poll_queued_until = None
        trigger.poll_lease_owner, trigger.poll_lease_until = "", None
        next_at = done + timedelta(seconds=poll.interval)
        if outcome.status == "ok":
            trigger.last_poll_ok, trigger.consecutive_failures, trigger.backoff_until = (
                True,
                0,
                None,
            )
            if trigger.connection.state == ConnectionState.CONNECTED:
                checked[trigger.connection_id] = poll.interval
        elif outcome.status == "paused":
            trigger.last_poll_ok, trigger.backoff_until = None, None
        else:
            trigger.last_poll_ok = False
            trigger.consecutive_failures += 1
            if poll.retry_after is not None:
                next_at = done + timedelta(seconds=poll.retry_after)
            else:
                next_at = done + failure_backoff(poll.interval, trigger.consecutive_failures)
            trigger.backoff_until = next_at
            poll.outcome = PollOutcome("failed", message=outcome.message, until=next_at)
        trigger.next_poll_at = next_at
    update_grouped(
        Trigger.objects.filter(poll_lease_owner=owner),
        (poll.trigger for poll in recorded),
        RESULT_FIELDS,
        expressions=_unless_disabled,
    )
    TriggerPoll.objects.bulk_create(
        TriggerPoll(
            trigger=poll.trigger,
            started_at=poll.progress.started_at,
            finished_at=done,
            outcome=OUTCOMES[poll.outcome.status],
            items=poll.progress.fired,
            pages=poll.progress.pages,
            error=poll.outcome.message[:500],
        )
        for poll in recorded
    )
    for poll in recorded:
        if poll.retry_after is not None:
            hold_connection(poll.trigger.connection_id, poll.outcome.until, poll.outcome.message)
    _count_as_health_checks(checked, done)


def _unless_disabled(changes: dict) -> dict:
    """A trigger disabled meanwhile stays unscheduled."""
    next_at = changes["next_poll_at"]
    return {**changes, "next_poll_at": Case(When(enabled=True, then=Value(next_at)), default=None)}


def hold_connection(connection_id: int, until: datetime, message: str) -> None:
    """A provider's Retry-After holds every trigger of the connection and its
    health check: none polls or checks before ``until``."""
    Trigger.objects.filter(connection_id=connection_id).filter(
        Q(backoff_until__isnull=True) | Q(backoff_until__lt=until)
    ).update(backoff_until=until, last_error=message[:500])
    Trigger.objects.filter(
        connection_id=connection_id, enabled=True, next_poll_at__lt=until
    ).update(next_poll_at=until)
    Connection.objects.filter(pk=connection_id, next_check_at__lt=until).update(next_check_at=until)


def _count_as_health_checks(checked: dict[int, int], when: datetime) -> None:
    """A Connected connection's successful poll stands for its health check:
    the next check moves one interval on (a Degraded one is left to the
    health check, whose state machine decides whether it recovered). One
    UPDATE per polling interval among them."""
    by_interval: dict[int, list[int]] = {}
    for connection_id, interval in checked.items():
        by_interval.setdefault(interval, []).append(connection_id)
    for interval, ids in by_interval.items():
        Connection.objects.filter(pk__in=ids, state=ConnectionState.CONNECTED).update(
            last_checked_at=when,
            last_success_at=when,
            next_check_at=when + timedelta(seconds=interval),
        )
