"""Probes for load balancers and orchestrators."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import readiness
from portal.celery import app as celery_app

log = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and answers."""
    return JsonResponse({"status": "ok"})


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _broker() -> str:
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=2)
    return "ok"


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the broker answer, and every check the apps
    registered (``portal.readiness``) passes: ready for traffic. 503
    otherwise, naming what failed (never how it is configured)."""
    checks = {}
    for name, probe in (("database", _database), ("broker", _broker)):
        try:
            checks[name] = probe()
        except Exception as error:  # any failure means not ready
            log.warning("Readiness: the %s is unreachable: %s", name, type(error).__name__)
            checks[name] = "unreachable"
    for name, check in readiness.registered().items():
        try:
            problem = check()
        except Exception as error:  # a check that cannot run is no pass
            log.warning("Readiness: the %s check failed: %s", name, type(error).__name__)
            problem = "could not be checked"
        if problem:
            log.warning("Readiness: %s: %s", name, problem)
        checks[name] = problem or "ok"
    ready = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )
