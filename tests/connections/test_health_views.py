"""Health on the connection page and across the tenant: Check now queues a
check and the spinner polls for its result; the chart is computed from the
checks; failing connections link to the troubleshooting guide; tenant
administrators see counts by status and what needs attention."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import charts, health, oauth, troubleshooting, unreadable
from connections.catalog import get_catalog
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from connections.tasks import check_connection_task
from tests.connections.fake_provider import GOOD_TOKEN, WEAK_TOKEN
from tests.factories import ConnectionFactory, FolderFactory, assign

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "check-status"}


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


def add_check(connection, *, ok=True, latency_ms=40, status_code=200, error="", at=None):
    check = HealthCheck.objects.create(
        connection=connection,
        ok=ok,
        latency_ms=latency_ms,
        status_code=status_code,
        error="" if ok else error or "Failed.",
    )
    if at is not None:
        HealthCheck.objects.filter(pk=check.pk).update(checked_at=at)
        check.checked_at = at
    return check


def urls(connection) -> dict[str, str]:
    args = [connection.folder_id, connection.pk]
    return {
        "detail": reverse("connection_detail", args=args),
        "check": reverse("connection_check", args=args),
        "progress": reverse("connection_check_progress", args=args),
    }


@pytest.fixture
def user_with_use(make_user, tree):
    user = make_user("uma")
    assign(user, tree["finance"], "Automation User")
    return user


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Records what reaches the broker instead of sending it."""
    sent: list[int] = []
    monkeypatch.setattr(check_connection_task, "delay", lambda pk, **kwargs: sent.append(pk))
    return sent


# --- Check now -----------------------------------------------------------------


def test_check_now_queues_a_check_after_commit_and_answers_a_spinner(
    client, tree, user_with_use, queued, django_capture_on_commit_callbacks
):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    before = add_check(connection)
    client.force_login(user_with_use)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(urls(connection)["check"], **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="check-progress"' in body
    assert 'hx-trigger="every 1s"' in body
    assert f"{urls(connection)['progress']}?after={before.pk}&amp;started=" in body
    # Scheduled, not run: nothing was sent before the commit, no check recorded.
    assert len(callbacks) == 1
    assert queued == []
    assert connection.health_checks.count() == 1
    callbacks[0]()
    assert queued == [connection.pk]
    assert connection.health_checks.count() == 1


def test_check_now_without_htmx_queues_and_returns_to_the_page(
    client, tree, user_with_use, queued, django_capture_on_commit_callbacks
):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    client.force_login(user_with_use)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(urls(connection)["check"])
    assert response.status_code == 302
    assert response["Location"] == urls(connection)["detail"]
    assert queued == [connection.pk]
    page = client.get(urls(connection)["detail"]).content.decode()
    assert "Check queued: it runs in the background." in page
    assert not connection.health_checks.exists()


def test_a_disabled_connection_is_not_queued(
    client, tree, user_with_use, queued, django_capture_on_commit_callbacks
):
    connection = ConnectionFactory(
        folder=tree["finance"], is_enabled=False, sandbox=True, sealed=True
    )
    client.force_login(user_with_use)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(urls(connection)["check"], **HTMX)
        redirect = client.post(urls(connection)["check"])
    assert response.status_code == 200
    assert "This connection is disabled" in response.content.decode()
    assert redirect.status_code == 302
    assert callbacks == [] and queued == []


@pytest.mark.parametrize(
    "role, status",
    [("Viewer", 403), (None, 404)],
    ids=["view-only", "no-role"],
)
def test_check_now_and_its_progress_need_connections_use(
    client, tree, make_user, queued, django_capture_on_commit_callbacks, role, status
):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    user = make_user("vera")
    if role:
        assign(user, tree["finance"], role)
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert client.post(urls(connection)["check"], **HTMX).status_code == status
        assert client.post(urls(connection)["check"]).status_code == status
    progress = client.get(urls(connection)["progress"], {"after": 0, "started": 0}, **HTMX)
    assert progress.status_code == status
    assert callbacks == [] and queued == []


def test_a_connection_in_another_folder_answers_404(client, tree, user_with_use, queued):
    elsewhere = ConnectionFactory(folder=tree["hr"], sandbox=True, sealed=True)
    client.force_login(user_with_use)
    assert client.post(urls(elsewhere)["check"], **HTMX).status_code == 404
    # Its id under a folder the user may use: still not found.
    url = reverse("connection_check", args=[tree["finance"].pk, elsewhere.pk])
    assert client.post(url, **HTMX).status_code == 404


def test_progress_answers_the_spinner_until_a_newer_check_exists(client, tree, user_with_use):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    old = add_check(connection, ok=False, latency_ms=None, status_code=None, error="Timed out.")
    client.force_login(user_with_use)
    params = {"after": old.pk, "started": int(time.time())}

    waiting = client.get(urls(connection)["progress"], params, **HTMX)
    assert waiting.status_code == 200
    body = waiting.content.decode()
    assert 'data-testid="check-progress"' in body and 'hx-trigger="every 1s"' in body
    assert f"after={old.pk}&amp;started={params['started']}" in body
    assert "hx-swap-oob" not in body

    add_check(connection, ok=True, latency_ms=87)
    Connection.objects.filter(pk=connection.pk).update(last_checked_at=timezone.now())
    done = client.get(urls(connection)["progress"], params, **HTMX)
    assert done.status_code == 286  # HttpResponseStopPolling
    body = done.content.decode()
    assert "Check succeeded in 87 ms." in body
    assert "hx-trigger" not in body
    # The status, the health panel (with its chart) and the history are redrawn.
    for part in (
        'id="connection-status" hx-swap-oob="true"',
        'id="health-panel"',
        'id="history-panel"',
    ):
        assert part in body
    assert body.count('hx-swap-oob="true"') == 3
    assert 'data-testid="health-chart"' in body


def test_progress_of_a_failed_check_links_to_its_troubleshooting_entry(client, tree, user_with_use):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    client.force_login(user_with_use)
    error = "Sandbox refused the credentials (401 Unauthorized): the token is wrong."
    add_check(connection, ok=False, status_code=401, error=error)
    Connection.objects.filter(pk=connection.pk).update(
        state=ConnectionState.NEEDS_RECONNECT, last_error=error
    )
    done = client.get(urls(connection)["progress"], {"after": 0, "started": 0}, **HTMX)
    assert done.status_code == 286
    body = done.content.decode()
    assert f"Check failed: {error}" in body
    assert 'href="/help/troubleshooting/#rejected-credentials"' in body


def test_progress_stops_waiting_after_a_while(client, tree, user_with_use):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    client.force_login(user_with_use)
    long_ago = int(time.time()) - 3600
    response = client.get(urls(connection)["progress"], {"after": 0, "started": long_ago}, **HTMX)
    assert response.status_code == 286
    assert "The check is still queued" in response.content.decode()


def test_progress_outside_htmx_and_bad_parameters(client, tree, user_with_use):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    client.force_login(user_with_use)
    plain = client.get(urls(connection)["progress"], {"after": 0, "started": 0})
    assert plain.status_code == 302 and plain["Location"] == urls(connection)["detail"]
    for params in ({}, {"after": "x", "started": "1"}, {"after": "1"}):
        assert client.get(urls(connection)["progress"], params, **HTMX).status_code == 400


def test_the_queued_task_records_a_check_the_progress_then_finds(
    client, tree, user_with_use, queued, django_capture_on_commit_callbacks, fakehub, provider
):
    """The whole path with the worker's part run here: Check now, the task
    (as a worker runs it), the fragment with the result."""
    connection = ConnectionFactory(
        folder=tree["finance"],
        name="Hub",
        state=ConnectionState.NOT_CONNECTED,
        secret={"token": GOOD_TOKEN},
    )
    client.force_login(user_with_use)
    with django_capture_on_commit_callbacks(execute=True):
        spinner = client.post(urls(connection)["check"], **HTMX).content.decode()
    assert queued == [connection.pk]
    progress = re.search(r'hx-get="([^"]+)"', spinner).group(1).replace("&amp;", "&")
    assert client.get(progress, **HTMX).status_code == 200
    check_connection_task.run(connection.pk, actor_id=user_with_use.pk)
    done = client.get(progress, **HTMX)
    assert done.status_code == 286
    # The history names who asked for the check, not "System".
    checked = connection.events.get(kind=ConnectionEvent.Kind.CHECKED)
    assert checked.actor == user_with_use
    assert re.search(r"Check succeeded in \d+ ms\.", done.content.decode())
    assert "Connected as octo-robot." in done.content.decode()


# --- The connection page ------------------------------------------------------


def test_detail_page_draws_the_chart_and_the_refresh_history(client, tree, user_with_use):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True)
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for minute, ok in enumerate([True, True, False, True]):
        add_check(
            connection,
            ok=ok,
            latency_ms=100 + minute * 10 if ok else None,
            status_code=200 if ok else None,
            error="" if ok else "Could not reach sandbox: connection timed out after 5 s.",
            at=start + timedelta(minutes=5 * minute),
        )
    ConnectionEvent.objects.create(
        connection=connection,
        kind=ConnectionEvent.Kind.REFRESHED,
        detail="New access token.",
        token_expires_at=datetime(2026, 11, 1, 13, 5, tzinfo=UTC),
    )
    ConnectionEvent.objects.create(
        connection=connection,
        kind=ConnectionEvent.Kind.REFRESH_FAILED,
        detail="Will try again: Sandbox's token endpoint answered 503: try again later.",
    )
    client.force_login(user_with_use)
    page = client.get(urls(connection)["detail"]).content.decode()
    assert 'data-testid="health-chart"' in page
    assert page.count('class="chart__segment chart__segment--') == 4
    assert page.count('data-status="degraded"') == 1
    assert "<polyline" in page
    assert "4 checks from 2026-11-01 12:00 to 2026-11-01 12:15: 3 succeeded, 1 failed" in page
    refreshes = page[page.index('data-testid="refreshes"') :]
    assert "2026-11-01 13:05:00" in refreshes
    assert "Will try again" in refreshes
    assert " style=" not in page  # the CSP forbids inline styles


def test_detail_page_without_checks(client, tree, user_with_use):
    connection = ConnectionFactory(
        folder=tree["finance"], state=ConnectionState.NOT_CONNECTED, sandbox=True, sealed=True
    )
    client.force_login(user_with_use)
    page = client.get(urls(connection)["detail"]).content.decode()
    assert 'data-testid="no-checks"' in page
    assert 'data-testid="trouble-link"' not in page


@pytest.mark.parametrize(
    "state, error, status_code, anchor",
    [
        (
            ConnectionState.NEEDS_RECONNECT,
            "Sandbox refused the grant: the code expired, was already used, or the user "
            "name or password is wrong. Reconnect the connection to sign in again.",
            None,
            "rejected-credentials",
        ),
        (ConnectionState.MISCONFIGURED, "Sandbox answered 404.", 404, "not-found"),
        (
            ConnectionState.DEGRADED,
            "Could not reach sandbox: the connection failed.",
            None,
            "unreachable",
        ),
    ],
)
def test_a_failing_connection_links_to_the_guide(
    client, tree, user_with_use, state, error, status_code, anchor
):
    connection = ConnectionFactory(
        folder=tree["finance"], state=state, last_error=error, sandbox=True, sealed=True
    )
    add_check(connection, ok=False, status_code=status_code, latency_ms=None, error=error)
    client.force_login(user_with_use)
    page = client.get(urls(connection)["detail"]).content.decode()
    assert f'href="/help/troubleshooting/#{anchor}" data-testid="trouble-link"' in page


def test_a_healthy_or_disabled_connection_has_no_trouble_link(client, tree, user_with_use):
    healthy = ConnectionFactory(folder=tree["finance"], name="Fine", sandbox=True, sealed=True)
    add_check(healthy)
    disabled = ConnectionFactory(
        folder=tree["finance"],
        name="Off",
        is_enabled=False,
        state=ConnectionState.NEEDS_RECONNECT,
        last_error="refused",
        sandbox=True,
        sealed=True,
    )
    client.force_login(user_with_use)
    for connection in (healthy, disabled):
        page = client.get(urls(connection)["detail"]).content.decode()
        assert 'data-testid="trouble-link"' not in page


def test_detail_page_shows_the_next_check_and_a_deactivated_authenticator(
    client, tree, user_with_use, make_user
):
    leaver = make_user("leaver")
    connection = ConnectionFactory(
        folder=tree["finance"], authenticated_by=leaver, sandbox=True, sealed=True
    )
    Connection.objects.filter(pk=connection.pk).update(
        next_check_at=datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    )
    client.force_login(user_with_use)
    page = client.get(urls(connection)["detail"]).content.decode()
    assert "<dt>Next check</dt><dd>2026-12-01 08:30:00</dd>" in page
    assert 'data-testid="authenticator-deactivated"' not in page
    leaver.is_active = False
    leaver.save()
    page = client.get(urls(connection)["detail"]).content.decode()
    assert "authenticated by a deactivated user" in page
    assert "leaver, who authenticated this connection, has been deactivated" in page


# --- The chart, from rows -------------------------------------------------------


def row(minute: float, ok=True, latency=100, status=200, error=""):
    return SimpleNamespace(
        checked_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute),
        ok=ok,
        latency_ms=latency,
        status_code=status,
        error=error,
    )


def test_chart_of_no_checks_is_none():
    assert charts.health_timeline([]) is None


def test_chart_places_checks_in_time_whatever_their_order():
    rows = [row(10), row(0), row(5, ok=False, latency=None, status=None, error="Timed out.")]
    chart = charts.health_timeline(rows)
    assert chart.count == 3 and chart.ok_count == 2 and chart.failed_count == 1
    assert chart.start == rows[1].checked_at and chart.end == rows[0].checked_at
    xs = [segment.x for segment in chart.segments]
    assert xs == sorted(xs)
    assert xs[0] == chart.plot_left
    # Evenly spaced checks: evenly spaced segments, the last one as wide as the others.
    widths = [segment.width for segment in chart.segments]
    assert max(widths) - min(widths) < 0.2
    assert chart.segments[-1].x + chart.segments[-1].width == pytest.approx(chart.plot_right, 0.1)
    assert [segment.status for segment in chart.segments] == ["connected", "degraded", "connected"]


def test_chart_statuses_follow_the_failure_kinds():
    rows = [
        row(0),
        row(1, ok=False, status=401),
        row(2, ok=False, status=200),  # Slack-style {"ok": false}
        row(3, ok=False, status=403),
        row(4, ok=False, status=404),
        row(5, ok=False, status=429),
        row(6, ok=False, status=503),
        row(7, ok=False, status=None, latency=None),
        row(8, ok=False, status=400),
    ]
    statuses = [segment.status for segment in charts.health_timeline(rows).segments]
    assert statuses == [
        "connected",
        "needs_reconnect",
        "needs_reconnect",
        "misconfigured",
        "misconfigured",
        "degraded",
        "degraded",
        "degraded",
        "misconfigured",
    ]
    legend = [status for status, _ in charts.health_timeline(rows).statuses]
    assert legend == ["connected", "degraded", "needs_reconnect", "misconfigured"]


def test_chart_latency_scale_and_a_line_broken_by_unanswered_checks():
    rows = [
        row(0, latency=120),
        row(1, latency=430),
        row(2, ok=False, latency=None, status=None),
        row(3, latency=80),
        row(4, latency=90),
    ]
    chart = charts.health_timeline(rows)
    assert [tick.label for tick in chart.ticks] == ["0 ms", "250 ms", "500 ms"]
    assert chart.ticks[0].y == chart.latency_bottom and chart.ticks[-1].y == chart.latency_top
    assert len(chart.lines) == 2  # no line through the check that got no answer
    assert all(len(line.split()) == 2 for line in chart.lines)
    unmeasured = [point for point in chart.points if not point.measured]
    assert len(unmeasured) == 1 and unmeasured[0].y == chart.latency_bottom
    slowest = max(chart.points, key=lambda point: chart.latency_bottom - point.y)
    assert slowest.y == pytest.approx(chart.latency_bottom - 430 / 500 * 108, abs=0.1)
    assert (chart.min_latency_ms, chart.max_latency_ms) == (80, 430)


def test_chart_of_one_check_and_of_very_dense_checks():
    single = charts.health_timeline([row(0)])
    assert len(single.segments) == 1
    assert single.segments[0].x == single.plot_left
    assert single.segments[0].width == single.plot_right - single.plot_left
    assert single.lines == []  # a lone point is drawn as its marker only
    dense = charts.health_timeline([row(0)] + [row(10_000 + i / 1000) for i in range(5)])
    assert all(segment.width >= charts.MIN_SEGMENT_WIDTH for segment in dense.segments)
    assert all(segment.x + segment.width <= dense.plot_right + 0.05 for segment in dense.segments)


@pytest.mark.parametrize(
    "value, ceiling",
    [(3, 10), (10, 10), (11, 20), (180, 200), (201, 250), (999, 1000), (4100, 5000)],
)
def test_nice_ceiling(value, ceiling):
    assert charts.nice_ceiling(value) == ceiling


def test_axis_labels_switch_to_seconds():
    assert charts.format_ms(1500) == "1.5 s"
    assert charts.format_ms(250) == "250 ms"


# --- The troubleshooting guide --------------------------------------------------


def test_help_page_serves_every_entry_with_its_anchor(client, make_user):
    client.force_login(make_user("reader"))
    response = client.get(reverse("help_troubleshooting"))
    assert response.status_code == 200
    page = response.content.decode()
    for anchor in troubleshooting.ERROR_KINDS:
        assert f'<h2 id="{anchor}">' in page, anchor
        assert f'href="#{anchor}"' in page  # the table of contents
    assert not re.search(r"\{#[a-z-]+\}", page)  # the anchor syntax is not shown
    assert " style=" not in page


def test_help_page_needs_a_signed_in_user(client):
    response = client.get(reverse("help_troubleshooting"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_markdown_is_rendered_without_raw_html():
    guide = troubleshooting.render_markdown(
        "# Title\n\n<!-- a note\nfor maintainers -->\n## Entry {#entry}\n\n"
        "<script>alert(1)</script> <b onclick=x>hi</b>\n\n"
        "[bad](javascript:alert(1)) [good](https://example.com)\n\n"
        "## Entry {#entry}\n\n## Plain one\n"
    )
    html = str(guide.html)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "onclick" not in html.replace("&lt;b onclick=x&gt;", "")
    assert 'href="javascript:' not in html
    assert 'href="https://example.com"' in html
    assert guide.title == "Title"
    assert "maintainers" not in html
    assert [entry.anchor for entry in guide.entries] == ["entry", "entry-2", "plain-one"]


def sandbox_connector():
    return get_catalog().get("sandbox")


@pytest.mark.parametrize(
    "code, anchor",
    [
        ("invalid_client", "invalid-client"),
        ("unauthorized_client", "invalid-client"),
        ("redirect_uri_mismatch", "redirect-uri-mismatch"),
        ("access_denied", "access-denied"),
        ("invalid_scope", "forbidden"),
        ("invalid_grant", "rejected-credentials"),
    ],
)
def test_oauth_errors_map_to_their_entries(code, anchor):
    message = oauth._explain(code, "", sandbox_connector())
    assert troubleshooting.error_kind(state="", error=message) == anchor


def test_refresh_messages_map_to_their_entries():
    no_refresh = "This connection has no refresh token: reconnect it."
    assert troubleshooting.error_kind(state="needs_reconnect", error=no_refresh) == (
        "no-refresh-token"
    )
    assert troubleshooting.error_kind(state="", error=oauth.EXPIRING_WARNING) == (
        "no-refresh-token"
    )
    transient = "Sandbox's token endpoint answered 429: try again later."
    assert troubleshooting.error_kind(state="degraded", error=transient) == "rate-limited"
    # The status comes as data (the check's, or the OAuth outcome's), never
    # read back out of the words.
    down = (
        "The access token could not be refreshed: Sandbox's token endpoint answered 503: "
        "try again later."
    )
    assert troubleshooting.error_kind(state="degraded", error=down, status_code=503) == (
        "provider-error"
    )
    assert troubleshooting.error_kind(state="degraded", error=down) == "unreachable"


@pytest.mark.parametrize(
    "message",
    [
        "api.example.com reset the connection before its answer was complete.",
        "api.example.com closed the connection before its answer was complete.",
        "api.example.com answered with something that is not valid HTTP.",
        "api.example.com sent more than the length it announced (Content-Length).",
        "api.example.com sent an answer that could not be decoded.",
        "api.example.com sent an answer larger than 10 MiB; the portal stops reading there.",
        "api.example.com stopped sending for 20 s before its answer was complete.",
        "Could not reach api.example.com: no complete answer within 30 s.",
    ],
)
def test_network_failures_map_to_unreachable(message):
    assert troubleshooting.error_kind(state="degraded", error=message) == "unreachable"


def test_an_unreadable_secret_maps_to_its_entry():
    assert troubleshooting.error_kind(state="misconfigured", error=unreadable.MESSAGE) == (
        "secret-unreadable"
    )


@pytest.mark.parametrize(
    "token, fail_with, anchor",
    [
        ("revoked", 0, "rejected-credentials"),
        (WEAK_TOKEN, 0, "forbidden"),
        (GOOD_TOKEN, 404, "not-found"),
        (GOOD_TOKEN, 429, "rate-limited"),
        (GOOD_TOKEN, 503, "provider-error"),
        (GOOD_TOKEN, 422, "not-found"),
        (GOOD_TOKEN, 408, "unreachable"),
    ],
)
def test_health_check_failures_map_to_their_entries(fakehub, provider, token, fail_with, anchor):
    provider.fail_with = fail_with
    result = health.run_check(fakehub, fakehub.auth_type("pat"), {}, {"token": token})
    assert not result.ok
    state = {"rejected": "needs_reconnect", "forbidden": "misconfigured"}.get(
        result.failure, "degraded"
    )
    kind = troubleshooting.error_kind(
        state=state, error=result.error, status_code=result.status_code
    )
    assert kind == anchor


def test_an_unreachable_provider_maps_to_its_entry(fakehub, provider):
    provider.stop()
    result = health.run_check(fakehub, fakehub.auth_type("pat"), {}, {"token": GOOD_TOKEN})
    assert result.failure == "unreachable"
    assert troubleshooting.error_kind(state="degraded", error=result.error) == "unreachable"


def test_state_alone_decides_when_nothing_else_is_known():
    assert troubleshooting.error_kind(state="needs_reconnect") == "rejected-credentials"
    assert troubleshooting.error_kind(state="degraded") == "unreachable"
    assert troubleshooting.error_kind(state="connected") == ""
    assert troubleshooting.error_kind(state="degraded", status_code=200, ok=True) == "unreachable"


# --- The tenant's health overview ----------------------------------------------


@pytest.fixture
def estate(tree, make_user):
    """Connections in every state across shared folders, and some in a
    personal workspace that the overview must not count."""
    finance, payables, hr = tree["finance"], tree["payables"], tree["hr"]
    ConnectionFactory(
        folder=finance, name="Ledger", state=ConnectionState.CONNECTED, sandbox=True, sealed=True
    )
    ConnectionFactory(
        folder=finance,
        name="Bank",
        state=ConnectionState.DEGRADED,
        consecutive_failures=2,
        last_error="Could not reach bank: connection timed out after 5 s.",
        sandbox=True,
        sealed=True,
    )
    ConnectionFactory(
        folder=payables,
        name="Invoices",
        state=ConnectionState.NEEDS_RECONNECT,
        last_error="Sandbox refused the grant. Reconnect the connection.",
        sandbox=True,
        sealed=True,
    )
    ConnectionFactory(
        folder=hr,
        name="Payroll",
        state=ConnectionState.MISCONFIGURED,
        last_error="Sandbox accepted the credentials but they lack permission.",
        sandbox=True,
        sealed=True,
    )
    ConnectionFactory(
        folder=hr,
        name="Old",
        state=ConnectionState.NEEDS_RECONNECT,
        is_enabled=False,
        sandbox=True,
        sealed=True,
    )
    ConnectionFactory(
        folder=hr, name="New", state=ConnectionState.NOT_CONNECTED, sandbox=True, sealed=True
    )
    owner = make_user("priya")
    for state in (ConnectionState.NEEDS_RECONNECT, ConnectionState.CONNECTED):
        ConnectionFactory(
            folder=owner.personal_workspace,
            name=f"Private {state}",
            state=state,
            sandbox=True,
            sealed=True,
        )
    return tree


def counts_in(page: str) -> dict[str, int]:
    return {
        state: int(number)
        for state, number in re.findall(r'data-testid="count-(\w+)">(\d+)<', page)
    }


def test_overview_counts_shared_folders_only_and_lists_the_worst_first(
    client, tenant_admin, estate
):
    client.force_login(tenant_admin)
    response = client.get(reverse("tenant_health"))
    assert response.status_code == 200
    page = response.content.decode()
    assert counts_in(page) == {
        "needs_reconnect": 1,
        "misconfigured": 1,
        "degraded": 1,
        "connected": 1,
        "not_connected": 1,
        "disabled": 1,
    }
    table = page[page.index('data-testid="attention"') :]
    names = re.findall(r'href="/folders/\d+/connections/\d+/">([^<]+)</a>', table)
    assert names == ["Invoices", "Payroll", "Bank"]
    assert "Private" not in page
    assert "Shared / Finance / Payables" in table
    assert 'href="/help/troubleshooting/#rejected-credentials"' in table
    assert 'href="/help/troubleshooting/#forbidden"' in table
    assert 'href="/help/troubleshooting/#unreachable"' in table
    assert 'class="tab is-active">Health</a>' in page


def test_overview_filters_by_status(client, tenant_admin, estate):
    client.force_login(tenant_admin)
    connected = client.get(reverse("tenant_health"), {"state": "connected"}).content.decode()
    assert re.findall(r'connections/\d+/">([^<]+)</a>', connected) == ["Ledger"]
    disabled = client.get(reverse("tenant_health"), {"state": "disabled"}).content.decode()
    assert re.findall(r'connections/\d+/">([^<]+)</a>', disabled) == ["Old"]
    unknown = client.get(reverse("tenant_health"), {"state": "nonsense"}).content.decode()
    assert re.findall(r'connections/\d+/">([^<]+)</a>', unknown) == ["Invoices", "Payroll", "Bank"]


def test_overview_is_for_tenant_administrators_only(client, tree, make_user):
    admin_of_folder = make_user("fiona")
    assign(admin_of_folder, tree["finance"], "Folder Administrator")
    client.force_login(admin_of_folder)
    assert client.get(reverse("tenant_health")).status_code == 403
    client.logout()
    assert client.get(reverse("tenant_health")).status_code == 302


def test_overview_when_nothing_needs_attention(client, tenant_admin, tree):
    ConnectionFactory(folder=tree["finance"], name="Ledger", sandbox=True, sealed=True)
    client.force_login(tenant_admin)
    page = client.get(reverse("tenant_health")).content.decode()
    assert 'data-testid="all-healthy"' in page


def test_overview_queries_stay_constant_and_pages(client, tenant_admin, tree):
    client.force_login(tenant_admin)
    ConnectionFactory(
        folder=tree["payables"],
        name="First",
        state=ConnectionState.DEGRADED,
        sandbox=True,
        sealed=True,
    )

    def queries(**params) -> tuple[int, str]:
        with CaptureQueriesContext(db) as captured:
            response = client.get(reverse("tenant_health"), params)
        assert response.status_code == 200
        return len(captured), response.content.decode()

    few, _ = queries()
    folders = [FolderFactory(name=f"Team {i}", parent=tree["shared"]) for i in range(12)]
    for i in range(120):
        connection = ConnectionFactory(
            folder=folders[i % 12],
            name=f"Robot {i:03d}",
            state=[ConnectionState.NEEDS_RECONNECT, ConnectionState.DEGRADED][i % 2],
            consecutive_failures=i % 7,
            sandbox=True,
            sealed=True,
        )
        add_check(connection, ok=False, status_code=401 if i % 2 == 0 else 503)
    many, page = queries()
    assert many == few
    assert "Page 1 of 3 · 121 connections" in page
    last, page3 = queries(page=3)
    assert last == few
    assert page3.count('data-testid="trouble-link"') == 21
