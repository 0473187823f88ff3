"""Replay of one event: a person asks an event its trigger fired to start the
trigger's process again. The replay is a new job, delivered like any other:
a webhook with a new ``webhook-id`` (a receiver that already handled the
first job does not take it for a redelivery of it) and/or the job queue.

The first job of an event is the polls' (one per event, the constraint
``job_one_per_event``, so a poll task run twice never makes a second one);
each replay points at it with ``Job.replay_of``. Permissions are the
caller's to ask (the pages: Triggers - Manage, the API: Processes - Manage,
as Retry of a failed delivery in each place)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from connections.models import Job, TriggerEvent
from connections.triggers.outbox import new_webhook_id


def first_job(event: TriggerEvent) -> Job | None:
    """The job the event's poll made (None if it is gone)."""
    return Job.objects.filter(event=event, replay_of__isnull=True).first()


def replay_event(
    event: TriggerEvent, *, on_new_job: Callable[[list[int]], None] | None = None
) -> Job:
    """A new job of the event's trigger's process (the process the trigger
    starts now) for ``event``, pointing at the event's first job. With a
    webhook it gets a new ``webhook-id`` and is due for delivery now;
    ``on_new_job`` gets its id once the transaction commits (the pages and
    the API pass ``tasks.enqueue_deliveries``; without it the delivery sweep
    finds the job). With a job queue, robots can claim it at once."""
    trigger = event.trigger
    process = trigger.process
    webhook = bool(process.webhook_url)
    with transaction.atomic():
        original = first_job(event)
        job = Job.objects.create(
            process=process,
            trigger=trigger,
            event=event,
            replay_of=original,
            webhook_id=new_webhook_id() if webhook else "",
            delivery_state=Job.DeliveryState.PENDING if webhook else Job.DeliveryState.NONE,
            delivery_due_at=timezone.now() if webhook else None,
        )
        if webhook and on_new_job is not None:
            transaction.on_commit(lambda: on_new_job([job.pk]))
    return job
