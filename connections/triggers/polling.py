"""One poll of one trigger: the event's requests (``connections.catalog.events``)
sent through the guarded outbound client with the connection's working
credential, the answers read, and each page's new events, their jobs and
the cursor stored in one transaction (``outbox``).

- One poll at a time per trigger: a lease taken with a conditional UPDATE.
- A disabled connection, or one that needs reconnecting or was never
  connected, pauses its triggers: the poll sends nothing and says why.
- A 401 goes through the refresh path once (OAuth 2.0), then marks the
  connection Needs reconnect, as a health check would.
- 429 and 503 with Retry-After hold every trigger of the connection until
  then; other failures back off exponentially, with jitter, and are
  recorded on the trigger.
- A successful poll of a Connected connection counts as its health check:
  the next health check moves one polling interval on.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

from django.conf import settings
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from connections import egress, health, refresh
from connections.catalog import ConnectorMissing, connector_of
from connections.catalog.events import (
    EventAnswerError,
    EventRequestError,
    build_poll_request,
    read_poll_answer,
)
from connections.catalog.schema import OAUTH2_KINDS
from connections.models import Connection, ConnectionState, Trigger, TriggerPoll
from connections.runtime import Credentials, Unresolved, credentials_for
from connections.triggers import outbox
from connections.unreadable import CredentialUnreadable

log = logging.getLogger(__name__)

# A poll that keeps failing waits the polling interval, doubled after each
# failure, at most this long (or the interval, when that is longer).
MAX_BACKOFF_SECONDS = 3600
# Retry-After beyond this is taken as this (a provider's typo must not stop polling for days).
MAX_RETRY_AFTER_SECONDS = 6 * 3600
RATE_LIMIT_STATUS = (429, 503)

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


def retry_after_seconds(value: str | None, now: datetime | None = None) -> int | None:
    """A Retry-After header (seconds, or an HTTP date) in seconds; None when
    absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return min(int(text), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = (moment - (now or timezone.now())).total_seconds()
    return max(0, min(int(seconds) + 1, MAX_RETRY_AFTER_SECONDS))


def failure_backoff(interval: int, failures: int) -> timedelta:
    """How long after its ``failures``-th failure in a row a trigger polls
    again: the interval, doubled each time, capped, plus up to 10% jitter."""
    cap = max(MAX_BACKOFF_SECONDS, interval)
    seconds = min(cap, interval * 2 ** max(0, failures - 1))
    return timedelta(seconds=seconds * random.uniform(1.0, 1.1))  # noqa: S311


def _lease_seconds(max_pages: int) -> float:
    # Every page may take the whole deadline, and a refresh may come first.
    return settings.PORTAL_HTTP_TOTAL_TIMEOUT * (max_pages + 2) + 60


def _take_lease(trigger_id: int, owner: str, seconds: float) -> bool:
    now = timezone.now()
    free = Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now)
    return (
        Trigger.objects.filter(free, pk=trigger_id).update(
            poll_lease_owner=owner, poll_lease_until=now + timedelta(seconds=seconds)
        )
        == 1
    )


def poll_trigger(
    trigger_id: int,
    *,
    if_due: bool = False,
    minimum_interval: int | None = None,
    on_new_jobs: Callable[[list[int]], None] | None = None,
) -> PollOutcome:
    """Poll one trigger now (``if_due``: only if its poll is still due, as
    the sweep asks). See the module's docstring for what it guarantees.
    ``minimum_interval``: the tenant's minimum polling interval, when the
    caller has read it already (a batch of polls). ``on_new_jobs``: called
    with the ids of the jobs each page made, once that page has committed
    (the tasks enqueue their deliveries; without it the delivery sweep
    finds them)."""
    now = timezone.now()
    trigger = Trigger.objects.select_related("connection", "process").filter(pk=trigger_id).first()
    if trigger is None:
        return PollOutcome("gone")
    if not trigger.enabled:
        return PollOutcome("disabled", message="The trigger is disabled.")
    if if_due and (trigger.next_poll_at is None or trigger.next_poll_at > now):
        Trigger.objects.filter(pk=trigger_id).update(poll_queued_until=None)
        return PollOutcome("not_due")
    connection = trigger.connection
    interval = health.effective_polling_interval(connection, minimum_interval)
    if trigger.backoff_until and trigger.backoff_until > now:
        Trigger.objects.filter(pk=trigger_id).update(poll_queued_until=None)
        return PollOutcome(
            "waiting", message=trigger.last_error or "Backing off.", until=trigger.backoff_until
        )
    reason = paused_because(connection)
    if reason:
        _record(
            trigger,
            owner=None,
            last_poll_ok=None,
            message=reason,
            next_at=now + timedelta(seconds=interval),
            progress=Progress(now),
        )
        return PollOutcome("paused", message=reason)

    owner = uuid.uuid4().hex
    try:
        connector = connector_of(connection)
        event = connector.event(trigger.event_key)
    except ConnectorMissing as error:
        connector, event, missing = None, None, str(error)
    else:
        missing = "" if event else f"{connector.name} no longer has the event {trigger.event_key}."
    if not _take_lease(trigger_id, owner, _lease_seconds(event.max_pages if event else 1)):
        return PollOutcome("busy", message="Another poll of this trigger is running.")
    progress = Progress(now)
    try:
        if missing:
            raise PollFailed(missing)
        _poll(trigger, connection, connector, event, owner, on_new_jobs, progress)
    except PollFailed as failure:
        return _failed(trigger, owner, interval, str(failure), progress, failure.retry_after)
    except outbox.LeaseLost as lost:
        return PollOutcome("busy", message=str(lost))
    except Exception:
        log.exception("Polling trigger %s failed.", trigger_id)
        unexpected = "The poll failed unexpectedly; see the portal's log."
        _failed(trigger, owner, interval, unexpected, progress)
        raise
    done = timezone.now()
    _record(
        trigger,
        owner=owner,
        last_poll_ok=True,
        message="",
        next_at=done + timedelta(seconds=interval),
        progress=progress,
        failures=0,
    )
    _count_as_health_check(connection, done, interval)
    return PollOutcome("ok", fired=progress.fired)


def _poll(
    trigger: Trigger,
    connection: Connection,
    connector,
    event,
    owner: str,
    on_new_jobs: Callable[[list[int]], None] | None,
    progress: Progress,
) -> None:
    """The requests of one poll; the events stored, counted in ``progress``.
    PollFailed on failure (the cursor then stays where the last stored page
    left it)."""
    credentials = _credentials(connection)
    session = egress.session(health.egress_policy(connector))
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
                fallback = request.fallback_cursor() or ""
                outbox.store_page(trigger, lease_owner=owner, items=[], cursor=fallback)
                break
            if status in RATE_LIMIT_STATUS:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if retry_after is not None:
                    raise PollFailed(
                        f"{connector.name} is limiting requests ({status}): no poll of "
                        f"{connection.name} before {retry_after} s have passed.",
                        retry_after=retry_after,
                    )
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
            jobs = outbox.store_page(
                trigger,
                lease_owner=owner,
                items=result.items,
                cursor=result.cursor,
                on_new_jobs=on_new_jobs,
            )
            progress.fired += len(jobs)
            progress.pages += 1
            pages += 1
            page = result.next_page
            if page is None:
                break
    except (egress.EgressDenied, egress.EgressError) as error:
        raise PollFailed(str(error)) from None
    finally:
        session.close()


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


def _record(
    trigger: Trigger,
    *,
    owner: str | None,
    last_poll_ok: bool | None,
    message: str,
    next_at: datetime,
    progress: Progress,
    failures: int | None = None,
    backoff_until: datetime | None = None,
) -> None:
    """The poll's result on the trigger, and its lease handed back, in one
    UPDATE; and its line in the trigger's poll history."""
    done = timezone.now()
    values = {
        "last_polled_at": done,
        "last_poll_ok": last_poll_ok,
        "last_poll_items": progress.fired,
        "last_error": message[:500],
        "backoff_until": backoff_until,
        "poll_queued_until": None,
    }
    if failures is not None:
        values["consecutive_failures"] = failures
    rows = Trigger.objects.filter(pk=trigger.pk)
    if owner is not None:
        rows = rows.filter(poll_lease_owner=owner)
        values.update(poll_lease_owner="", poll_lease_until=None)
    # Disabled meanwhile: it stays unscheduled.
    rows.update(next_poll_at=Case(When(enabled=True, then=Value(next_at)), default=None), **values)
    for name, value in values.items():
        setattr(trigger, name, value)
    trigger.next_poll_at = next_at
    outcome = {True: TriggerPoll.Outcome.OK, False: TriggerPoll.Outcome.FAILED}.get(
        last_poll_ok, TriggerPoll.Outcome.PAUSED
    )
    TriggerPoll.objects.create(
        trigger=trigger,
        started_at=progress.started_at,
        finished_at=done,
        outcome=outcome,
        items=progress.fired,
        pages=progress.pages,
        error=message[:500],
    )


def _failed(
    trigger: Trigger,
    owner: str,
    interval: int,
    message: str,
    progress: Progress,
    retry_after: int | None = None,
) -> PollOutcome:
    now = timezone.now()
    failures = trigger.consecutive_failures + 1
    if retry_after is not None:
        until = now + timedelta(seconds=retry_after)
        hold_connection(trigger.connection_id, until, message)
    else:
        until = now + failure_backoff(interval, failures)
    _record(
        trigger,
        owner=owner,
        last_poll_ok=False,
        message=message,
        next_at=until,
        progress=progress,
        failures=failures,
        backoff_until=until,
    )
    return PollOutcome("failed", message=message, until=until)


def hold_connection(connection_id: int, until: datetime, message: str) -> None:
    """A provider's Retry-After holds every trigger of the connection: none
    polls before ``until``."""
    Trigger.objects.filter(connection_id=connection_id).filter(
        Q(backoff_until__isnull=True) | Q(backoff_until__lt=until)
    ).update(backoff_until=until, last_error=message[:500])
    Trigger.objects.filter(
        connection_id=connection_id, enabled=True, next_poll_at__lt=until
    ).update(next_poll_at=until)


def _count_as_health_check(connection: Connection, when: datetime, interval: int) -> None:
    """A Connected connection's successful poll stands for its health check:
    the next check moves one interval on (a Degraded one is left to the
    health check, whose state machine decides whether it recovered)."""
    Connection.objects.filter(pk=connection.pk, state=ConnectionState.CONNECTED).update(
        last_checked_at=when,
        last_success_at=when,
        next_check_at=when + timedelta(seconds=interval),
    )
