"""Portal-level background tasks."""

import socket

from celery import shared_task
from django.utils import timezone

from portal.models import WorkerHeartbeat


@shared_task(name="portal.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Record that a worker is alive and beat is firing (shown to tenant admins)."""
    WorkerHeartbeat.objects.update_or_create(
        pk=1, defaults={"beat_at": timezone.now(), "hostname": socket.gethostname()}
    )
