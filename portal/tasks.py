"""Portal-level background tasks."""

import socket

from celery import shared_task
from django.utils import timezone

from portal import audit_log
from portal.models import WorkerHeartbeat


@shared_task(name="portal.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Record that a worker is alive and beat is firing (shown to tenant admins)."""
    WorkerHeartbeat.objects.update_or_create(
        pk=1, defaults={"beat_at": timezone.now(), "hostname": socket.gethostname()}
    )


@shared_task(name="portal.tasks.prune_audit", ignore_result=True, acks_late=True)
def prune_audit() -> int:
    """Delete audit records beyond PORTAL_AUDIT_RETENTION_DAYS (recorded)."""
    return audit_log.prune()
