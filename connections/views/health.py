"""Health on the connection page (Check now and its progress, the chart, the
refresh history) and the tenant administrator's health overview."""

from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from connections import status
from connections.access import connection_for
from connections.catalog import get_catalog
from connections.charts import health_timeline
from connections.models import Connection, ConnectionEvent, HealthCheck
from connections.tasks import check_connection_task
from portal.folder_tree import folder_name_paths
from portal.htmx import render_page, requested_partial, vary_on_htmx
from portal.permissions import Action, require_tenant_admin

# How many checks the chart draws, how many rows the table lists.
CHART_LENGTH = 50
CHECK_TABLE_LENGTH = 10
REFRESH_HISTORY_LENGTH = 20
EVENT_HISTORY_LENGTH = 50
# After this long without a result, the page stops waiting for a queued check.
CHECK_WAIT_SECONDS = 60
# The connection page's element that Check now and its polling swap into.
CHECK_STATUS = ("check-status",)
PAGE_SIZE = 50

REFRESH_KINDS = (ConnectionEvent.Kind.REFRESHED, ConnectionEvent.Kind.REFRESH_FAILED)


# --- The connection page's health panel ------------------------------------


def refresh_history(connection: Connection) -> list[dict]:
    """The connection's latest refreshes and failed refreshes, newest first:
    when, whether it worked, the new token's expiry, what was said."""
    events = connection.events.filter(kind__in=REFRESH_KINDS)[:REFRESH_HISTORY_LENGTH]
    return [
        {
            "when": event.created_at,
            "ok": event.kind == ConnectionEvent.Kind.REFRESHED,
            "expires": event.token_expires_at,
            "detail": event.detail,
        }
        for event in events
    ]


def health_context(connection: Connection) -> dict:
    """What the health panel (and the parts a finished check redraws) shows."""
    connector = get_catalog().get(connection.connector_key)
    checks = list(connection.health_checks.all()[:CHART_LENGTH])
    latest = checks[0] if checks else None
    return {
        "connector": connector,
        "auth": connector.auth_type(connection.auth_type) if connector else None,
        # Set by each check (the sweep's schedule); None while disabled.
        "next_check": connection.next_check_at if connection.is_enabled else None,
        "chart": health_timeline(checks),
        "checks": checks[:CHECK_TABLE_LENGTH],
        "refreshes": refresh_history(connection),
        "trouble_anchor": status.trouble_anchor(
            connection,
            status_code=latest.status_code if latest else None,
            ok=latest.ok if latest else False,
        ),
        "events": connection.events.select_related("actor")[:EVENT_HISTORY_LENGTH],
    }


# --- Check now ---------------------------------------------------------------


def _latest_check_id(connection: Connection) -> int:
    return (
        HealthCheck.objects.filter(connection=connection)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    ) or 0


def _status(
    request: HttpRequest,
    connection: Connection,
    response_class: type[HttpResponse] = HttpResponse,
    **context,
) -> HttpResponse:
    """The connection page's check-status partial (the views answer it only
    to htmx aiming at it; anything else goes to the page)."""
    return render_page(
        request,
        "connections/detail.html",
        {"connection": connection, "folder": connection.folder, **context},
        partials=CHECK_STATUS,
        response_class=response_class,
    )


def _to_the_page(connection: Connection) -> HttpResponse:
    return vary_on_htmx(redirect("connection_detail", connection.folder_id, connection.pk))


@require_POST
@login_required
def check_now(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    """Queue a health check. With htmx, answer a spinner that polls for the
    result; without, go back to the page with a message."""
    connection, _ = connection_for(request.user, folder_id, connection_id, Action.USE_CONNECTIONS)
    fragment = requested_partial(request, CHECK_STATUS)
    if not connection.is_enabled:
        error = "This connection is disabled: enable it before checking it."
        if fragment:
            return _status(request, connection, error=error)
        messages.error(request, error)
        return _to_the_page(connection)
    after = _latest_check_id(connection)
    check_connection_task.delay_on_commit(connection.pk, actor_id=request.user.pk)
    if fragment:
        return _status(request, connection, waiting=True, after=after, started=int(time.time()))
    messages.info(
        request,
        "Check queued: it runs in the background. Reload this page in a few seconds to see "
        "its result.",
    )
    return _to_the_page(connection)


@require_GET
@login_required
def check_progress(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    """Polled by the spinner: the spinner again until a check newer than
    ``after`` is recorded, then its result (and the redrawn health panel,
    status and history, swapped out of band) and an end to the polling."""
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.USE_CONNECTIONS
    )
    if not requested_partial(request, CHECK_STATUS):
        return _to_the_page(connection)
    try:
        after = int(request.GET["after"])
        started = int(request.GET["started"])
    except (KeyError, ValueError):
        return vary_on_htmx(HttpResponseBadRequest("after and started must be whole numbers."))
    result = connection.health_checks.filter(pk__gt=after).order_by("-pk").first()
    if result is None:
        if time.time() - started > CHECK_WAIT_SECONDS:
            return _status(
                request, connection, response_class=HttpResponseStopPolling, timed_out=True
            )
        response = _status(request, connection, waiting=True, after=after, started=started)
        response["Cache-Control"] = "no-store"
        return response
    return _status(
        request,
        connection,
        response_class=HttpResponseStopPolling,
        result=result,
        perms_here=perms,
        **health_context(connection),
    )


# --- The tenant's health overview ---------------------------------------------


@require_GET
@login_required
def tenant_health(request: HttpRequest) -> HttpResponse:
    """Counts by status across the shared folders, and the connections that
    need attention, worst first. Personal workspaces are not looked into."""
    require_tenant_admin(request.user)
    overview = status.health_overview(
        Connection.objects.visible_to(request.user).in_shared_folders(),
        request.GET.get("state", ""),
    )
    page = Paginator(overview.listed.select_related("folder"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    catalog = get_catalog()
    paths = folder_name_paths([connection.folder for connection in page.object_list])
    for connection in page.object_list:
        connection.connector = catalog.get(connection.connector_key)
        connection.folder_path = paths[connection.folder_id]
        connection.trouble_anchor = status.trouble_anchor(
            connection, status_code=connection.last_status_code, ok=bool(connection.last_ok)
        )
    return render(
        request,
        "connections/health_overview.html",
        {
            "tenant_tab": "health",
            "counts": overview.counts,
            "page": page,
            "state_filter": overview.status,
            "state_label": overview.label,
        },
    )
