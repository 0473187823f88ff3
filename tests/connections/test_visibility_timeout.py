"""The Redis visibility timeout fits the longest countdown (docs/operations.md,
"The broker"): a task sent with a countdown is held unacknowledged until it
is due and has run, and Redis delivers it again once the timeout has passed,
so the timeout must exceed the longest countdown the portal sends plus a
run. Every countdown is measured here at its largest; a shorter timeout
stops ``manage.py check`` (and with it ``migrate`` and ``runserver``) with a
message saying what to set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from connections import tasks
from connections.models import Connection, ConnectionState
from portal.checks import check_celery_visibility_timeout
from tests.factories import FolderFactory

ROOT = Path(__file__).resolve().parents[2]


def _connections(count: int = 3) -> None:
    """Connections due for a refresh and for a health check."""
    folder = FolderFactory()
    now = timezone.now()
    Connection.objects.bulk_create(
        [
            Connection(
                folder=folder,
                connector_key="sandbox",
                name=f"due-{n}",
                auth_type="oauth2_authorization_code",
                state=ConnectionState.CONNECTED,
                token_expires_at=now + timedelta(seconds=10),
                next_check_at=now - timedelta(seconds=5),
            )
            for n in range(count)
        ]
    )


@pytest.mark.django_db
def test_every_countdown_fits_within_the_longest(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The largest countdown each place that sends one can choose is at most
    PORTAL_CELERY_LONGEST_COUNTDOWN, the figure the check adds a run to."""
    longest = settings.PORTAL_CELERY_LONGEST_COUNTDOWN
    # A refresh retry: the backoff, whatever the provider's Retry-After asks.
    monkeypatch.setattr(tasks.random, "uniform", lambda low, high: high)
    for retries in range(tasks.MAX_RETRIES + 1):
        assert tasks.backoff(retries, retry_after=10**6) <= tasks.MAX_BACKOFF_SECONDS <= longest
    # The sweeps: a countdown within their jitter, here at its largest.
    sent = []
    for task in (tasks.refresh_connection_task, tasks.check_connections_task):
        monkeypatch.setattr(
            task, "apply_async", lambda *args, countdown=0, **kw: sent.append(countdown)
        )
    _connections()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.refresh_sweep.run() == 3
        assert tasks.health_sweep.run() == 3
    assert len(sent) == 6
    assert max(sent) == max(
        settings.PORTAL_REFRESH_JITTER_SECONDS, settings.PORTAL_HEALTH_JITTER_SECONDS
    )
    assert max(sent) <= longest


def test_the_countdowns_above_are_all_there_are():
    """Every countdown or ETA in the portal's code is in connections/tasks.py
    (the test above measures those); one added elsewhere must be measured
    there too, and PORTAL_CELERY_LONGEST_COUNTDOWN raised if it is longer."""
    keyword = re.compile(r"\b(countdown|eta)=(?!=)")  # as in apply_async(countdown=...)
    found = {
        str(path.relative_to(ROOT))
        for package in ("portal", "connections", "solutions")
        for path in (ROOT / package).rglob("*.py")
        if keyword.search(path.read_text())
    }
    assert found == {"connections/tasks.py"}


def test_the_check_refuses_a_timeout_below_the_longest_countdown(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.PORTAL_REFRESH_WAIT_SECONDS = 30
    settings.PORTAL_REFRESH_LEASE_SECONDS = 60
    settings.PORTAL_CELERY_LONGEST_COUNTDOWN = 600
    least = 600 + 30 + 60

    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": least - 1}
    [error] = check_celery_visibility_timeout()
    assert error.id == "portal.E001"
    assert "PORTAL_CELERY_VISIBILITY_TIMEOUT is 689 s" in error.msg
    assert f"at least {least}" in error.hint

    for fine in (least, 900):
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": fine}
        assert check_celery_visibility_timeout() == []
    # A longer countdown raises the floor.
    settings.PORTAL_CELERY_LONGEST_COUNTDOWN = 1200
    [error] = check_celery_visibility_timeout()
    assert "at least 1290" in error.hint
    # The filesystem broker has no visibility timeout.
    settings.CELERY_BROKER_URL = "filesystem://"
    assert check_celery_visibility_timeout() == []


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items() if key != "PORTAL_CELERY_VISIBILITY_TIMEOUT"
    }
    environment.update(DJANGO_SETTINGS_MODULE="tests.settings", PYTHONDONTWRITEBYTECODE="1")
    # Only the URL's scheme matters here: nothing connects to Redis.
    if not environment.get("REDIS_URL"):
        environment["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    environment.update(env)
    return subprocess.run(  # noqa: S603 (our interpreter, fixed arguments)
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_manage_py_check_stops_on_a_short_timeout():
    result = _manage("check", PORTAL_CELERY_VISIBILITY_TIMEOUT="300")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "(portal.E001) PORTAL_CELERY_VISIBILITY_TIMEOUT is 300 s" in output
    assert "Set it to at least 690 (seconds)" in output


def test_the_default_passes_the_check():
    shown = _manage(
        "shell",
        "--no-startup",
        "-c",
        "from django.conf import settings; "
        "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "900"
    result = _manage("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "portal.E001" not in result.stdout + result.stderr
