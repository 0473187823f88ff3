"""Webhook deliveries of jobs, by the Standard Webhooks specification:
``webhook-id`` (the job's, the same for every attempt), ``webhook-timestamp``
(the attempt's) and ``webhook-signature`` (``v1,`` HMAC-SHA256 over
id.timestamp.body with the process's secret, made by the ``standardwebhooks``
package), POSTed through the guarded outbound client.

At least once, never a second success: an attempt is claimed on the job's
row with a conditional UPDATE (the attempt number moves, the due time becomes
the attempt's lease), so a task delivered twice, or a sweep that sends a job
again, finds nothing to claim; once delivered the job is never due again. A
worker that dies during an attempt leaves the job due when the lease ends,
and the next attempt (same ``webhook-id``) goes out. A failed attempt is
retried with exponential backoff and jitter (the due time the delivery sweep
reads), then the delivery is failed, and ``retry_delivery`` sends it again.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from connections import egress, vault
from connections.models import Delivery, Job
from connections.triggers.processes import signing_secret

ATTEMPTS = 8
FIRST_RETRY_SECONDS = 30
LONGEST_WAIT_SECONDS = 6 * 3600
# A task may run this much before the due time it was sent for (clocks).
EARLY_SECONDS = 1
EVENT_TYPE = "trigger.event"
ERROR_LENGTH = 500

ACTIVE = (Job.DeliveryState.PENDING, Job.DeliveryState.RETRYING)


@dataclass(frozen=True)
class DeliveryOutcome:
    """``delivered``, ``retrying`` (at ``next_at``), ``failed`` (no attempts
    left), or ``skipped`` (nothing due: delivered already, another attempt
    running, not due yet, or no webhook)."""

    status: Literal["delivered", "retrying", "failed", "skipped"]
    attempt: int = 0
    status_code: int | None = None
    error: str = ""
    next_at: datetime | None = None


def retry_wait(attempt: int) -> timedelta:
    """How long after failed attempt ``attempt`` the next one is due:
    doubling from FIRST_RETRY_SECONDS, plus up to 25% jitter, capped."""
    seconds = min(LONGEST_WAIT_SECONDS, FIRST_RETRY_SECONDS * 2 ** (attempt - 1))
    return timedelta(seconds=seconds * random.uniform(1.0, 1.25))  # noqa: S311


def _lease() -> timedelta:
    return timedelta(seconds=settings.PORTAL_HTTP_TOTAL_TIMEOUT + 30)


def payload(job: Job) -> dict[str, Any]:
    """The webhook's body: the event with what it links to, so a receiver (or
    a person reading a failed run) goes straight to the trigger and the
    connection."""
    event, trigger = job.event, job.trigger
    connection = trigger.connection
    return {
        "type": EVENT_TYPE,
        "timestamp": event.created_at.isoformat(),
        "data": {
            "job_id": job.pk,
            # A replay of the event: the event's first job (None: this is it).
            "replay_of": job.replay_of_id,
            "process": {"id": job.process_id, "name": job.process.name},
            "trigger": {"id": trigger.pk, "event": trigger.event_key},
            "connection": {
                "id": connection.pk,
                "name": connection.name,
                "connector": connection.connector_key,
            },
            "event": {
                "id": event.pk,
                "provider_id": event.provider_id,
                "provider_timestamp": (
                    event.provider_timestamp.isoformat() if event.provider_timestamp else None
                ),
                "summary": event.summary,
                "payload": event.payload,
            },
        },
    }


def webhook_policy() -> egress.EgressPolicy:
    """Any public host; private and loopback addresses only where the
    operator allows them (PORTAL_EGRESS_ALLOWED_NETWORKS)."""
    return egress.EgressPolicy(allowed_hosts=())


def _claim(job_id: int) -> tuple[Job, int] | None:
    """Take the job's next attempt if its delivery is due: (the job, the
    attempt's number), or None when there is nothing to claim."""
    now = timezone.now()
    job = (
        Job.objects.select_related("process", "trigger__connection", "event")
        .filter(pk=job_id)
        .first()
    )
    if (
        job is None
        or job.delivery_state not in ACTIVE
        or job.delivery_due_at is None
        or job.delivery_due_at > now + timedelta(seconds=EARLY_SECONDS)
        or not job.process.webhook_url
    ):
        return None
    attempt = job.delivery_attempts + 1
    with transaction.atomic():
        claimed = Job.objects.filter(
            pk=job_id,
            delivery_attempts=attempt - 1,
            delivery_state__in=ACTIVE,
            delivery_due_at__lte=now + timedelta(seconds=EARLY_SECONDS),
        ).update(delivery_attempts=attempt, delivery_due_at=now + _lease())
        if not claimed:
            return None
        # An attempt whose worker stopped before recording its answer.
        Delivery.objects.filter(job_id=job_id, state=Delivery.State.SENDING).update(
            state=Delivery.State.FAILED,
            error="No answer was recorded: the worker stopped during this attempt.",
            finished_at=now,
        )
        Delivery.objects.create(job=job, attempt=attempt, webhook_id=job.webhook_id)
    return job, attempt


def _post(job: Job) -> tuple[int | None, str]:
    """Send the signed webhook once: (status code, error in plain words)."""
    body = json.dumps(payload(job), separators=(",", ":")).encode()
    try:
        secret = signing_secret(job.process)
    except vault.VaultError:
        return None, (
            "The webhook signing secret cannot be read: make a new one on the process's page, "
            "or restore the encryption key it was sealed with."
        )
    sent_at = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": job.webhook_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(job.webhook_id, sent_at, body),
    }
    try:
        response = egress.request(
            "POST", job.process.webhook_url, policy=webhook_policy(), data=body, headers=headers
        )
    except (egress.EgressDenied, egress.EgressError) as error:
        return None, str(error)
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    reason = f" {response.reason}" if response.reason else ""
    return response.status_code, f"The receiver answered {response.status_code}{reason}."


def deliver_job(job_id: int) -> DeliveryOutcome:
    """Make the job's next delivery attempt if one is due (see the module's
    docstring); safe to call any number of times."""
    claimed = _claim(job_id)
    if claimed is None:
        return DeliveryOutcome("skipped")
    job, attempt = claimed
    status_code, error = _post(job)
    now = timezone.now()
    ours = Job.objects.filter(pk=job_id, delivery_attempts=attempt)
    runs_itself = not job.process.job_queue  # without a queue, the job's state is its delivery's
    with transaction.atomic():
        if not error:
            outcome = DeliveryOutcome("delivered", attempt, status_code)
            done = {"state": Job.State.COMPLETED, "finished_at": now} if runs_itself else {}
            ours.update(
                delivery_state=Job.DeliveryState.DELIVERED,
                delivery_due_at=None,
                delivery_queued_until=None,
                **done,
            )
        elif attempt < ATTEMPTS:
            next_at = now + retry_wait(attempt)
            outcome = DeliveryOutcome("retrying", attempt, status_code, error, next_at)
            ours.update(
                delivery_state=Job.DeliveryState.RETRYING,
                delivery_due_at=next_at,
                delivery_queued_until=None,
            )
        else:
            outcome = DeliveryOutcome("failed", attempt, status_code, error)
            done = (
                {
                    "state": Job.State.FAILED,
                    "finished_at": now,
                    "result": f"Delivery failed after {attempt} attempts: {error}"[:ERROR_LENGTH],
                }
                if runs_itself
                else {}
            )
            ours.update(
                delivery_state=Job.DeliveryState.FAILED,
                delivery_due_at=None,
                delivery_queued_until=None,
                **done,
            )
        Delivery.objects.filter(job_id=job_id, attempt=attempt).update(
            state=Delivery.State.FAILED if error else Delivery.State.DELIVERED,
            status_code=status_code,
            error=error[:ERROR_LENGTH],
            finished_at=now,
            next_attempt_at=outcome.next_at,
        )
    return outcome


def retry_delivery(job: Job) -> bool:
    """The Retry button: a failed delivery is due again now, with the same
    ``webhook-id`` (the caller enqueues it, or the delivery sweep finds it).
    False when the delivery is not failed (delivered, or still retrying)."""
    reopened = {"state": Job.State.PENDING, "finished_at": None, "result": ""}
    changed = Job.objects.filter(pk=job.pk, delivery_state=Job.DeliveryState.FAILED).update(
        delivery_state=Job.DeliveryState.RETRYING,
        delivery_due_at=timezone.now(),
        delivery_queued_until=None,
        **({} if job.process.job_queue else reopened),
    )
    job.refresh_from_db()
    return changed == 1
