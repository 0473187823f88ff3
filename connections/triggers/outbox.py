"""What one page of a poll stores, in one transaction: the events it found
that the trigger has not stored, one job for each, and the cursor that moved
over them (the outbox). Delivery is another task, sent once this commits; a
worker that dies before then loses nothing (the delivery sweep finds the
jobs whose delivery is due)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from django.db import transaction
from django.utils import timezone

from connections.catalog.events import PolledItem
from connections.models import Job, Trigger, TriggerEvent

PROVIDER_ID_LENGTH = TriggerEvent._meta.get_field("provider_id").max_length


class LeaseLost(Exception):
    """Another poll of the trigger took over (this one outlived its lease):
    nothing was stored."""


def new_webhook_id() -> str:
    """A Standard Webhooks message id, kept by the job for every attempt."""
    return f"msg_{uuid.uuid4().hex}"


def store_page(
    trigger: Trigger,
    *,
    lease_owner: str,
    items: Iterable[PolledItem],
    cursor: str,
    on_new_jobs: Callable[[list[int]], None] | None = None,
) -> list[Job]:
    """Store ``items`` (those whose provider id the trigger has not stored)
    as events, a job of the trigger's process for each, and ``cursor``, all
    or nothing, while the poll's lease is still ``lease_owner``'s. Returns the
    new jobs; ``on_new_jobs`` gets their ids once the transaction commits.
    Raises LeaseLost, storing nothing, when the lease is no longer ours."""
    unique: dict[str, PolledItem] = {}
    for item in items:
        unique.setdefault(item.provider_id[:PROVIDER_ID_LENGTH], item)
    process = trigger.process
    webhook = bool(process.webhook_url)
    with transaction.atomic():
        # First, so the row stays locked (PostgreSQL) until the commit: a
        # second poll that took over cannot store beside this one.
        if not Trigger.objects.filter(pk=trigger.pk, poll_lease_owner=lease_owner).update(
            cursor=cursor
        ):
            raise LeaseLost(f"Trigger {trigger.pk} is being polled by another worker.")
        known = set(
            TriggerEvent.objects.filter(trigger=trigger, provider_id__in=list(unique)).values_list(
                "provider_id", flat=True
            )
        )
        events = TriggerEvent.objects.bulk_create(
            TriggerEvent(
                trigger=trigger,
                provider_id=provider_id,
                provider_timestamp=item.timestamp,
                summary=item.summary,
                payload=item.payload,
            )
            for provider_id, item in unique.items()
            if provider_id not in known
        )
        now = timezone.now()
        jobs = Job.objects.bulk_create(
            Job(
                process=process,
                trigger=trigger,
                event=event,
                webhook_id=new_webhook_id() if webhook else "",
                delivery_state=Job.DeliveryState.PENDING if webhook else Job.DeliveryState.NONE,
                delivery_due_at=now if webhook else None,
            )
            for event in events
        )
        if jobs and on_new_jobs is not None:
            ids = [job.pk for job in jobs]
            transaction.on_commit(lambda: on_new_jobs(ids))
    trigger.cursor = cursor
    return jobs
