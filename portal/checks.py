"""System checks of the portal's own settings (registered in PortalConfig.ready):
``manage.py check``, ``migrate`` and ``runserver`` stop on an error."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error


def check_celery_visibility_timeout(app_configs=None, **kwargs) -> list[Error]:
    """portal.E001: with Redis, a visibility timeout shorter than the
    longest countdown plus a run (the settings as they are when checked)."""
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return []  # the filesystem broker has no visibility timeout
    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    countdown = settings.PORTAL_CELERY_LONGEST_COUNTDOWN
    run = int(settings.PORTAL_REFRESH_WAIT_SECONDS + settings.PORTAL_REFRESH_LEASE_SECONDS)
    if timeout >= countdown + run:
        return []
    return [
        Error(
            f"PORTAL_CELERY_VISIBILITY_TIMEOUT is {timeout} s, shorter than the longest a "
            f"task may wait for its countdown and run ({countdown} s + {run} s): Redis would "
            "deliver such a task a second time while the first still waits.",
            hint=f"Set it to at least {countdown + run} (seconds), or leave it unset "
            '(900). See docs/operations.md, "The broker".',
            id="portal.E001",
        )
    ]
