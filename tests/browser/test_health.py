"""Health as a person sees it: the history chart on a connection's page,
Check now (a spinner, then the result swapped in without a reload), the link
from a broken connection to the troubleshooting guide, and the tenant
administrator's overview.

The check itself runs for real: the Sandbox connector's health request goes
over HTTP to the live server. Only the worker is played by the test
(``check_queue``, conftest): it runs the queued task once the page shows that
it is waiting for it.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections import sandbox
from connections.actions import create
from connections.catalog import get_catalog
from connections.models import Connection, ConnectionState, HealthCheck, SandboxToken
from tests.browser.conftest import login, screenshot
from tests.factories import assign

VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture
def sandbox_on(settings, live_server):
    """The Sandbox connector in the catalog, its API served by the live server."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    assert get_catalog().get("sandbox") is not None
    return live_server


def sandbox_connection(folder, owner, name="Finance sandbox") -> tuple[Connection, str]:
    _, token = sandbox.issue_token(user=owner, name=name)
    spec = get_catalog().get("sandbox")
    connection = create.create_secret_connection(
        folder=folder,
        connector=spec,
        auth=spec.auth_type("pat"),
        name=name,
        description="",
        fields={},
        secret={"token": token},
        created_by=owner,
    )
    return connection, token


def add_history(connection: Connection) -> int:
    """A day of checks, five minutes apart, with a slow spell and an outage."""
    now = timezone.now()
    rows = []
    for i in range(24):
        at = now - timedelta(minutes=5 * (24 - i))
        if i in (9, 10):
            rows.append((at, False, None, None, "Could not reach sandbox: no answer within 10 s."))
        elif i == 15:
            rows.append((at, False, 503, 240, "Sandbox answered 503 Service Unavailable."))
        else:
            latency = 60 + (i * 37) % 90 + (220 if i in (7, 8) else 0)
            rows.append((at, True, 200, latency, ""))
    for at, ok, status, latency, error in rows:
        check = HealthCheck.objects.create(
            connection=connection, ok=ok, status_code=status, latency_ms=latency, error=error
        )
        HealthCheck.objects.filter(pk=check.pk).update(checked_at=at)
    return connection.health_checks.count()


def segments(page: Page):
    return page.get_by_test_id("chart-status").locator("rect")


def test_health_chart_and_check_now_without_a_reload(
    page: Page, sandbox_on, tree, make_user, check_queue
):
    live_server = sandbox_on
    finance = tree["finance"]
    ada = make_user("ada")
    assign(ada, finance, "Automation Developer")
    connection, _ = sandbox_connection(finance, ada)
    total = add_history(connection)
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")

    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    chart = page.get_by_test_id("health-chart")
    expect(chart).to_be_visible()
    expect(segments(page)).to_have_count(total)
    expect(segments(page).and_(page.locator('[data-status="degraded"]'))).to_have_count(3)
    expect(chart.locator("polyline").first).to_be_visible()
    expect(chart).to_contain_text("Latency")
    expect(chart.locator("desc")).to_have_text(
        re.compile(rf"^{total} checks from .*: {total - 3} succeeded, 3 failed; latency")
    )
    chart.scroll_into_view_if_needed()
    screenshot(page, "01-health-history")

    # Check now: htmx posts, the spinner polls; no navigation happens.
    page.evaluate("window.__stillThisPage = true")
    page.get_by_role("button", name="Check now").click()
    progress = page.get_by_test_id("check-progress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text("Checking Finance sandbox…")
    expect(progress.locator(".spinner")).to_be_visible()
    page.wait_for_timeout(1500)  # a poll or two: still waiting, nothing ran yet
    expect(progress).to_be_visible()
    assert [args for args, _ in check_queue.queued] == [(connection.pk,)]
    assert connection.health_checks.count() == total
    screenshot(page, "02-checking")

    assert check_queue.run_all() == 1  # the worker's part, for real over HTTP
    result = page.get_by_test_id("check-result")
    expect(result).to_have_text(re.compile(r"^Check succeeded in \d+ ms\.$"))
    expect(progress).to_have_count(0)
    # The chart, the status and the history were swapped in out of band.
    expect(segments(page)).to_have_count(total + 1)
    expect(segments(page).last).to_have_attribute("data-status", "connected")
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    expect(page.get_by_test_id("history").locator("tbody tr").first).to_contain_text(
        "Connected as ada."
    )
    assert page.evaluate("window.__stillThisPage") is True  # no reload
    screenshot(page, "03-checked")

    # Polling stopped with the result: no further requests for progress.
    polls: list[str] = []
    page.on(
        "request",
        lambda request: polls.append(request.url) if "/progress/" in request.url else None,
    )
    page.wait_for_timeout(2500)
    assert polls == []


def test_a_revoked_token_links_to_its_troubleshooting_entry(
    page: Page, sandbox_on, tree, make_user, check_queue
):
    live_server = sandbox_on
    finance = tree["finance"]
    ada = make_user("ada")
    assign(ada, finance, "Automation Developer")
    connection, token = sandbox_connection(finance, ada, name="Payroll sandbox")
    SandboxToken.objects.filter(user=ada).update(revoked_at=timezone.now())
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")

    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_test_id("check-progress")).to_be_visible()
    check_queue.run_all()
    result = page.get_by_test_id("check-result")
    expect(result).to_contain_text("Check failed: Sandbox refused the credentials (401")
    expect(page.get_by_test_id("status")).to_have_text("Needs reconnect")
    expect(page.get_by_test_id("trouble")).to_contain_text("Needs reconnect")
    screenshot(page, "01-check-failed")

    page.get_by_test_id("trouble-link").click()
    expect(page).to_have_url(f"{live_server.url}/help/troubleshooting/#rejected-credentials")
    heading = page.locator("h2#rejected-credentials")
    expect(heading).to_have_text("Rejected credentials (invalid_grant, 401)")
    expect(heading).to_be_in_viewport()
    expect(page.get_by_test_id("guide")).to_contain_text("Replace secret")
    screenshot(page, "02-guide")
    assert token not in page.content()


def test_tenant_administrator_sees_the_health_overview(
    page: Page, sandbox_on, tree, make_user, tenant_admin
):
    live_server = sandbox_on
    owner = make_user("dev")
    states = {
        "Ledger": ConnectionState.CONNECTED,
        "Bank feed": ConnectionState.DEGRADED,
        "Invoices": ConnectionState.NEEDS_RECONNECT,
        "Payroll": ConnectionState.MISCONFIGURED,
    }
    errors = {
        "Bank feed": "Could not reach bank: connection timed out after 5 s.",
        "Invoices": "Sandbox refused the grant. Reconnect the connection to sign in again.",
        "Payroll": "Sandbox accepted the credentials but they lack permission for this check "
        "(403 Forbidden): grant the missing scope or role.",
    }
    folders = {"Ledger": "finance", "Bank feed": "finance", "Invoices": "payables", "Payroll": "hr"}
    for name, state in states.items():
        Connection.objects.create(
            folder=tree[folders[name]],
            connector_key="sandbox",
            name=name,
            auth_type="pat",
            state=state,
            last_error=errors.get(name, ""),
            consecutive_failures=3 if name in errors else 0,
            created_by=owner,
        )
    Connection.objects.create(
        folder=owner.personal_workspace,
        connector_key="sandbox",
        name="My own",
        auth_type="pat",
        state=ConnectionState.NEEDS_RECONNECT,
    )
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "root")
    page.get_by_role("link", name="Tenant settings").click()
    page.get_by_role("link", name="Health", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/tenant/health/")
    expect(page.get_by_test_id("count-needs_reconnect")).to_have_text("1")
    expect(page.get_by_test_id("count-connected")).to_have_text("1")
    rows = page.get_by_test_id("attention").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Invoices")
    expect(rows.nth(1)).to_contain_text("Payroll")
    expect(rows.nth(2)).to_contain_text("Bank feed")
    expect(page.locator("main")).not_to_contain_text("My own")
    screenshot(page, "01-overview")

    rows.nth(1).get_by_role("link", name="Payroll").click()
    expect(page.get_by_test_id("status")).to_have_text("Misconfigured")
    expect(page.get_by_test_id("trouble-link")).to_have_attribute(
        "href", "/help/troubleshooting/#forbidden"
    )
    screenshot(page, "02-misconfigured")
