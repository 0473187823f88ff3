"""Background work on connections. Tasks are thin: ids in, the domain
function does the work; they are idempotent, acknowledged late, and enqueued
after the transaction that made them necessary commits."""

from __future__ import annotations

import random
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections import refresh
from connections.models import Connection

MAX_RETRIES = 6
MAX_BACKOFF_SECONDS = 600  # below the Redis visibility timeout (docs/operations.md)


def backoff(retries: int, retry_after: int = 0) -> int:
    """Exponential backoff with jitter, at least what the provider asked for."""
    delay = min(MAX_BACKOFF_SECONDS, 10 * 2**retries) + random.uniform(0, 5)  # noqa: S311
    return int(min(MAX_BACKOFF_SECONDS, max(delay, retry_after)))


@shared_task(bind=True, name="connections.tasks.refresh_connection", acks_late=True)
def refresh_connection_task(self, connection_id: int) -> None:
    """Refresh one connection's token if it is (still) due; safe to run twice."""
    try:
        refresh.refresh_connection(connection_id)
    except Connection.DoesNotExist:
        return
    except refresh.RefreshError as error:
        if error.transient and self.request.retries < MAX_RETRIES:
            raise self.retry(
                countdown=backoff(self.request.retries, error.retry_after), max_retries=MAX_RETRIES
            ) from None
    finally:
        Connection.objects.filter(pk=connection_id).update(refresh_queued_until=None)


def due_for_refresh(now=None):
    """Connections whose access token expires within the lead time and that
    are not already queued: one query on the partial index."""
    now = now or timezone.now()
    return Connection.objects.filter(
        is_enabled=True,
        state__in=refresh.REFRESHABLE_STATES,
        token_expires_at__lte=now + refresh.lead_time(),
    ).exclude(refresh_queued_until__gt=now)


@shared_task(name="connections.tasks.refresh_sweep", acks_late=True)
def refresh_sweep() -> int:
    """Enqueue refreshes of the connections due, in batches, each at a random
    moment within the jitter so that tokens issued together are not all
    refreshed in the same second. Cost grows with the connections due."""
    now = timezone.now()
    jitter = settings.PORTAL_REFRESH_JITTER_SECONDS
    queued_until = now + timedelta(seconds=jitter + settings.PORTAL_REFRESH_LEASE_SECONDS * 2)
    ids = list(due_for_refresh(now).values_list("pk", flat=True)[: settings.PORTAL_REFRESH_BATCH])
    if not ids:
        return 0
    with transaction.atomic():
        Connection.objects.filter(pk__in=ids).update(refresh_queued_until=queued_until)
        for connection_id in ids:
            countdown = random.uniform(0, jitter)  # noqa: S311
            transaction.on_commit(
                lambda cid=connection_id, c=countdown: refresh_connection_task.apply_async(
                    (cid,), countdown=c
                )
            )
    return len(ids)


# A check waits at most this long in the queue before the sweep may enqueue it
# again (a message lost with the embedded broker, say): beyond the jitter, as
# long as a check may take (the HTTP timeouts, a refresh first).
CHECK_QUEUE_MARGIN_SECONDS = 300


@shared_task(name="connections.tasks.check_connection", acks_late=True)
def check_connection_task(connection_id: int, if_due: bool = False) -> None:
    """Run one connection's health check and record it; safe to run twice.
    Disabled connections are never checked. With ``if_due`` (the sweep), a
    connection checked meanwhile (Check now) is not checked again."""
    from connections import actions

    try:
        connection = Connection.objects.filter(pk=connection_id, is_enabled=True).first()
        if connection is None:
            return
        if if_due and (
            connection.next_check_at is None or connection.next_check_at > timezone.now()
        ):
            return
        try:
            actions.check_connection(connection=connection)
        except (actions.ConnectError, Connection.DoesNotExist):
            return
    finally:
        Connection.objects.filter(pk=connection_id).update(check_queued_until=None)


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
    per sweep (the next sweep takes the rest, most overdue first), each at a
    random moment within the jitter. Marks them queued first, so the next
    sweep does not enqueue them again (and a check enqueued twice all the same
    finds it no longer due and does nothing). Cost grows with the connections
    due, never with the ones not due."""
    now = timezone.now()
    jitter = settings.PORTAL_HEALTH_JITTER_SECONDS
    queued_until = now + timedelta(seconds=jitter + CHECK_QUEUE_MARGIN_SECONDS)
    ids = list(due_for_check(now).values_list("pk", flat=True)[: settings.PORTAL_HEALTH_BATCH])
    if not ids:
        return 0
    with transaction.atomic():
        Connection.objects.filter(pk__in=ids).update(check_queued_until=queued_until)
        for connection_id in ids:
            countdown = random.uniform(0, jitter)  # noqa: S311
            transaction.on_commit(
                lambda cid=connection_id, c=countdown: check_connection_task.apply_async(
                    (cid,), {"if_due": True}, countdown=c
                )
            )
    return len(ids)
