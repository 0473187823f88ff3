"""Background work on connections. Tasks are thin: ids in, the domain
function does the work; they are idempotent, acknowledged late, and enqueued
after the transaction that made them necessary commits."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from connections import engine, oauth, refresh, unreadable, vault
from connections.actions import check
from connections.catalog import ConnectorMissing
from connections.models import Connection, OAuthFlow

log = logging.getLogger(__name__)

MAX_RETRIES = 6
# The longest countdown a task is sent with: below the Redis visibility
# timeout, which portal/settings.py checks (docs/operations.md, "The broker").
MAX_BACKOFF_SECONDS = 600


def backoff(retries: int, retry_after: int = 0) -> int:
    """Exponential backoff with jitter, at least what the provider asked for."""
    delay = min(MAX_BACKOFF_SECONDS, 10 * 2**retries) + random.uniform(0, 5)  # noqa: S311
    return int(min(MAX_BACKOFF_SECONDS, max(delay, retry_after)))


# When many connections are due, the sweep sends several per task: a task
# costs the machine more than a refresh (the message received, handed to a
# pool process and acknowledged; and a new database connection, with a new
# PostgreSQL server process, as Celery's Django fixup closes the connection
# around every task). Up to REFRESHES_PER_TASK per task, as long as that
# leaves at least TASKS_AT_LEAST tasks to share among the worker processes: a
# sweep of fewer than 2 * TASKS_AT_LEAST connections sends one per task.
REFRESHES_PER_TASK = 25
TASKS_AT_LEAST = 50


@shared_task(bind=True, name="connections.tasks.refresh_connection", acks_late=True)
def refresh_connection_task(self, *connection_ids: int) -> None:
    """Refresh the connections' tokens that are (still) due, one after the
    other; safe to run twice. A transient failure retries that connection
    alone, with backoff, and the connection stays queued meanwhile, so the
    sweep starts no second chain of retries for it; with several
    connections, one failing does not stop the others."""
    alone = len(connection_ids) == 1
    retries = self.request.retries
    with oauth.portal_apps_read_once():
        for connection_id in connection_ids:
            try:
                countdown = _refresh_from_queue(connection_id, retries)
            except Exception:
                if alone:
                    raise
                log.exception("Refreshing connection %s failed.", connection_id)
                continue
            if countdown is None:
                continue
            if alone:
                raise self.retry(countdown=countdown, max_retries=MAX_RETRIES)
            try:
                refresh_connection_task.apply_async(
                    (connection_id,), countdown=countdown, retries=retries + 1
                )
            except Exception:
                # Not sent (the broker is down): its queued mark runs out and
                # a later sweep queues the connection again.
                log.exception("Retrying connection %s could not be queued.", connection_id)


def _refresh_from_queue(connection_id: int, retries: int = 0) -> int | None:
    """Refresh one queued connection if due (``retries``: how often its chain
    has retried so far). After a transient failure with retries left, the
    countdown of the retry to send: the connection stays queued until a
    little after it (``_hold_for_retry``). Otherwise None: the chain ends here
    (refreshed, not due, refused, retries spent, gone, or an unexpected error)
    and the queued mark is cleared, so a later sweep may start a new one."""
    countdown = None
    dequeued = False  # a stored refresh clears the queued mark in its own UPDATE
    try:
        dequeued = refresh.refresh_and_dequeue(connection_id)
    except Connection.DoesNotExist:
        return None
    except vault.VaultError as error:
        # Its secret cannot be opened: Misconfigured, and no retry will help.
        connection = Connection.objects.only("id", "name").filter(pk=connection_id).first()
        if connection is not None:
            unreadable.credential_unreadable(connection, error)
    except refresh.RefreshError as error:
        if error.transient and retries < MAX_RETRIES:
            countdown = backoff(retries, error.retry_after)
        elif error.transient:
            log.warning(
                "Refreshing connection %s failed %s times in a row; the next sweep tries again.",
                connection_id,
                retries + 1,
            )
    finally:
        if countdown is not None:
            _hold_for_retry(connection_id, countdown)
        elif not dequeued:
            Connection.objects.filter(pk=connection_id).update(refresh_queued_until=None)
    return countdown


def _hold_for_retry(connection_id: int, countdown: int) -> None:
    """Keep the connection queued while its retry waits: until the
    countdown, plus as long as the sweep's own mark allows a task beyond its
    jitter (two leases) for a busy worker and the retry's run. A retry whose
    message was lost holds it no longer than that."""
    margin = settings.PORTAL_REFRESH_LEASE_SECONDS * 2
    until = timezone.now() + timedelta(seconds=countdown + margin)
    Connection.objects.filter(pk=connection_id).update(refresh_queued_until=until)


def due_for_refresh(now=None):
    """Connections whose access token expires within the lead time and that
    are not already queued: one query on the partial index."""
    now = now or timezone.now()
    return Connection.objects.filter(
        is_enabled=True,
        state__in=refresh.REFRESHABLE_STATES,
        token_expires_at__lte=now + refresh.lead_time(),
    ).exclude(refresh_queued_until__gt=now)


def per_task(due: int) -> int:
    """How many refreshes the sweep puts in one task when ``due`` are due."""
    return max(1, min(REFRESHES_PER_TASK, due // TASKS_AT_LEAST))


@shared_task(name="connections.tasks.refresh_sweep", acks_late=True)
def refresh_sweep() -> int:
    """Enqueue refreshes of the connections due, at most PORTAL_REFRESH_BATCH
    per sweep, a few per task when many are due (``per_task``), each task at a
    random moment within the jitter so that tokens issued together are not all
    refreshed in the same second. Cost grows with the connections due."""
    now = timezone.now()
    jitter = settings.PORTAL_REFRESH_JITTER_SECONDS
    queued_until = now + timedelta(seconds=jitter + settings.PORTAL_REFRESH_LEASE_SECONDS * 2)
    ids = list(due_for_refresh(now).values_list("pk", flat=True)[: settings.PORTAL_REFRESH_BATCH])
    if not ids:
        return 0
    size = per_task(len(ids))
    with transaction.atomic():
        Connection.objects.filter(pk__in=ids).update(refresh_queued_until=queued_until)
        for start in range(0, len(ids), size):
            countdown = random.uniform(0, jitter)  # noqa: S311
            transaction.on_commit(
                lambda chunk=tuple(ids[start : start + size]), c=countdown: (
                    refresh_connection_task.apply_async(chunk, countdown=c)
                )
            )
    return len(ids)


# A check waits at most this long in the queue before the sweep may enqueue it
# again (a message lost with the embedded broker, say): beyond the jitter, as
# long as a batch of checks may take (the HTTP timeouts, a refresh first).
CHECK_QUEUE_MARGIN_SECONDS = 300
# As the refresh sweep: several checks per task when many are due
# (connections/engine.py), so that a batch shares its HTTP sessions, its
# database connection and its writes.
CHECKS_PER_TASK = 25


@shared_task(name="connections.tasks.check_connection", acks_late=True)
def check_connection_task(connection_id: int, actor_id: int | None = None) -> None:
    """Check now: one connection's health check, recorded with who asked
    (``actor_id``; None: "System"). Disabled connections are never checked.
    A recorded check clears the queued mark with its result; any other end
    clears it here."""
    recorded = False
    try:
        connection = Connection.objects.filter(pk=connection_id, is_enabled=True).first()
        if connection is None:
            return
        try:
            actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
            check.check_connection(connection=connection, actor=actor)
            recorded = True
        except (check.ConnectError, ConnectorMissing, Connection.DoesNotExist):
            return
    finally:
        if not recorded:
            Connection.objects.filter(pk=connection_id).update(check_queued_until=None)


@shared_task(name="connections.tasks.check_connections", acks_late=True)
def check_connections_task(*connection_ids: int) -> None:
    """The sweep's checks: those of these connections still due (a
    connection checked meanwhile, by Check now, is not checked again), as one
    batch of the polling engine; safe to run twice."""
    with engine.Batch() as batch:
        check.check_connections(connection_ids, batch)


def due_for_check(now=None):
    """Enabled connections whose next check is due and that are not already
    queued, most overdue first: one query on the partial index
    connection_check_due. Disabled and not-yet-connected connections have no
    next check, so they are never selected."""
    now = now or timezone.now()
    return (
        Connection.objects.filter(is_enabled=True, next_check_at__lte=now)
        .exclude(check_queued_until__gt=now)
        .order_by("next_check_at")
    )


@shared_task(name="connections.tasks.health_sweep", acks_late=True)
def health_sweep() -> int:
    """Enqueue the health checks that are due, at most PORTAL_HEALTH_BATCH
    per sweep (the next sweep takes the rest, most overdue first), in
    batches (``engine.per_task``), each batch at a random moment within the
    jitter. Marks them queued first, so the next sweep does not enqueue them
    again (and a check enqueued twice all the same finds it no longer due and
    does nothing). Cost grows with the connections due, never with the ones
    not due."""
    now = timezone.now()
    jitter = settings.PORTAL_HEALTH_JITTER_SECONDS
    queued_until = now + timedelta(seconds=jitter + CHECK_QUEUE_MARGIN_SECONDS)
    ids = list(due_for_check(now).values_list("pk", flat=True)[: settings.PORTAL_HEALTH_BATCH])
    if not ids:
        return 0
    with transaction.atomic():
        Connection.objects.filter(pk__in=ids).update(check_queued_until=queued_until)
        for chunk in engine.chunks(ids, engine.per_task(len(ids), CHECKS_PER_TASK)):
            countdown = random.uniform(0, jitter)  # noqa: S311
            transaction.on_commit(
                lambda chunk=chunk, c=countdown: check_connections_task.apply_async(
                    chunk, countdown=c
                )
            )
    return len(ids)


@shared_task(name="connections.tasks.delete_expired_oauth_flows", acks_late=True)
def delete_expired_oauth_flows() -> int:
    """Delete OAuth sign-ins that expired unfinished (abandoned at the
    provider, or failed), in one statement; safe to run twice. Completed
    flows are left alone."""
    deleted, _ = OAuthFlow.objects.filter(
        expires_at__lte=timezone.now(), completed_at__isnull=True
    ).delete()
    return deleted
