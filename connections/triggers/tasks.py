"""Background work of triggers: the poll sweep and the polls, the delivery
sweep and the deliveries. Thin, like ``connections.tasks``: ids in, the
domain function does the work; idempotent, acknowledged late, enqueued after
the transaction that made them necessary commits.

No countdowns: a poll is due at its trigger's ``next_poll_at`` and a
delivery retry at its job's ``delivery_due_at``, which the sweeps read, so a
long backoff never waits in the broker."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from connections import engine
from connections.models import Job, Trigger
from connections.triggers.delivery import deliver_job
from connections.triggers.polling import poll_trigger, poll_triggers

log = logging.getLogger(__name__)

# Several per task when many are due (connections/engine.py, per_task).
POLLS_PER_TASK = 25
DELIVERIES_PER_TASK = 25
# A poll or delivery waits at most this long in the queue before a sweep may
# enqueue it again (a message lost with the embedded broker, say).
QUEUE_MARGIN_SECONDS = 300


def enqueue_deliveries(job_ids: Sequence[int]) -> None:
    """Deliver these jobs' webhooks now (after the poll that made them committed)."""
    for chunk in engine.chunks(job_ids, DELIVERIES_PER_TASK):
        deliver_jobs_task.delay(*chunk)


@shared_task(name="connections.triggers.tasks.poll_triggers", acks_late=True)
def poll_triggers_task(*trigger_ids: int) -> None:
    """Poll the triggers still due, as one batch of the polling engine; one
    failing does not stop the others. New jobs' deliveries are enqueued as
    each page commits."""
    with engine.Batch() as batch:
        poll_triggers(trigger_ids, batch, if_due=True, on_new_jobs=enqueue_deliveries)


@shared_task(name="connections.triggers.tasks.poll_now", acks_late=True)
def poll_now_task(trigger_id: int) -> None:
    """Run poll now: poll the trigger whether due or not."""
    poll_trigger(trigger_id, on_new_jobs=enqueue_deliveries)


@shared_task(name="connections.triggers.tasks.deliver_jobs", acks_late=True)
def deliver_jobs_task(*job_ids: int) -> None:
    """Make each job's due delivery attempt; safe to run twice (an attempt
    is claimed on the job's row)."""
    for job_id in job_ids:
        try:
            deliver_job(job_id)
        except Exception:
            log.exception("Delivering job %s failed.", job_id)


def due_for_poll(now=None) -> QuerySet[Trigger]:
    """Enabled triggers whose poll is due and not already queued, most
    overdue first: one query on the partial index trigger_poll_due."""
    now = now or timezone.now()
    return (
        Trigger.objects.filter(enabled=True, next_poll_at__lte=now)
        .exclude(poll_queued_until__gt=now)
        .order_by("next_poll_at")
    )


@shared_task(name="connections.triggers.tasks.poll_sweep", acks_late=True)
def poll_sweep() -> int:
    """Enqueue the polls that are due, at most PORTAL_TRIGGER_POLL_BATCH per
    sweep, several per task when many are due; marks them queued first. Its
    queries do not grow with the triggers that are not due."""
    now = timezone.now()
    ids = list(due_for_poll(now).values_list("pk", flat=True)[: settings.PORTAL_TRIGGER_POLL_BATCH])
    if not ids:
        return 0
    queued_until = now + timedelta(seconds=QUEUE_MARGIN_SECONDS)
    with transaction.atomic():
        Trigger.objects.filter(pk__in=ids).update(poll_queued_until=queued_until)
        for chunk in engine.chunks(ids, engine.per_task(len(ids), POLLS_PER_TASK)):
            transaction.on_commit(lambda chunk=chunk: poll_triggers_task.delay(*chunk))
    return len(ids)


def due_for_delivery(now=None) -> QuerySet[Job]:
    """Jobs whose webhook delivery (first attempt, retry, or an attempt whose
    worker stopped) is due and not already queued: one query on the partial
    index job_delivery_due."""
    now = now or timezone.now()
    return (
        Job.objects.filter(delivery_due_at__lte=now)
        .exclude(delivery_queued_until__gt=now)
        .order_by("delivery_due_at")
    )


@shared_task(name="connections.triggers.tasks.delivery_sweep", acks_late=True)
def delivery_sweep() -> int:
    """Enqueue the deliveries that are due, at most
    PORTAL_TRIGGER_DELIVERY_BATCH per sweep: the outbox relay that makes a
    delivery whose message was lost, or whose worker died, go out anyway."""
    now = timezone.now()
    ids = list(
        due_for_delivery(now).values_list("pk", flat=True)[: settings.PORTAL_TRIGGER_DELIVERY_BATCH]
    )
    if not ids:
        return 0
    queued_until = now + timedelta(seconds=QUEUE_MARGIN_SECONDS)
    with transaction.atomic():
        Job.objects.filter(pk__in=ids).update(delivery_queued_until=queued_until)
        for chunk in engine.chunks(ids, engine.per_task(len(ids), DELIVERIES_PER_TASK)):
            transaction.on_commit(lambda chunk=chunk: deliver_jobs_task.delay(*chunk))
    return len(ids)
