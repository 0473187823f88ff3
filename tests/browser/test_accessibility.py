"""Every main page at 200 % zoom and with a screen reader.

axe-core (WCAG 2.1 A/AA and best practice) and the 640 px reflow check
(``tests/browser/a11y.py``) on the main pages, walked in one signed-in page;
then what axe does not count but a person meets: a failed form says so in
the title and takes focus to its errors, each field names its help and its
error, search and filter results are announced, and the focus ring stands
out on light and dark backgrounds. A screenshot at 640 px is saved of a few
pages.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Connection, ConnectionState, HealthCheck
from portal import api_keys
from portal.auth.invitations import send_invitation
from tests.browser.a11y import REFLOW_VIEWPORT, Tour, check_page, focus_ring_contrast
from tests.browser.conftest import login, screenshot
from tests.factories import assign

VIEWPORT = {"width": 1280, "height": 900}
STATES = [
    ConnectionState.CONNECTED,
    ConnectionState.DEGRADED,
    ConnectionState.NEEDS_RECONNECT,
    ConnectionState.MISCONFIGURED,
]


@pytest.fixture
def sandbox_on(settings, live_server):
    """The Sandbox connector in the catalog (the wizard's pages need one)."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    assert get_catalog().get("sandbox") is not None
    return live_server


@pytest.fixture
def finance_connections(tree, make_user) -> list[Connection]:
    """Twelve connections in Finance with long accounts (the table's width
    comes from its content), one with a health history."""
    owner = make_user("integration.service.account")
    made = []
    for i in range(12):
        made.append(
            Connection.objects.create(
                folder=tree["finance"],
                connector_key="sandbox",
                name=f"Finance ledger sync {i + 1:02d}",
                auth_type="pat",
                state=STATES[i % len(STATES)],
                account_identity=f"finance-automation-{i + 1:02d}@accounts.example.com",
                last_error="" if i % 4 == 0 else "Sandbox answered 503 Service Unavailable.",
                created_by=owner,
            )
        )
    now = timezone.now()
    for minutes in range(0, 60, 5):
        check = HealthCheck.objects.create(
            connection=made[0], ok=minutes != 25, status_code=200, latency_ms=80 + minutes
        )
        HealthCheck.objects.filter(pk=check.pk).update(checked_at=now - timedelta(minutes=minutes))
    return made


def test_login_page_reflows_and_a_failed_sign_in_is_announced(
    page: Page, live_server, make_user, page_problems
):
    make_user("hana")
    page.set_viewport_size(VIEWPORT)
    page.goto(f"{live_server.url}/accounts/login/")
    check_page(page, "the sign-in page", screenshot_as="login-640")

    page.locator("input[name=login]").fill("hana")
    page.locator("input[name=password]").fill("not-the-password")
    page.locator("main form button[type=submit]").click()
    expect(page.locator("main .errorlist")).to_contain_text("are not correct")
    page.wait_for_load_state("load")
    expect(page).to_have_title(re.compile(r"^Error: "))
    # Focus is on the message, not left on the page's body.
    expect(page.locator("main .errorlist")).to_be_focused()
    check_page(page, "the sign-in page with an error")


def test_main_pages_pass_axe_and_reflow_at_640_px(
    page: Page, sandbox_on, tree, tenant_admin, finance_connections, page_problems
):
    live_server = sandbox_on
    finance = tree["finance"]
    connection = finance_connections[0]
    api_keys.issue(owner=tenant_admin, name="Nightly invoice export", actor=tenant_admin)
    api_keys.create_robot(
        name="invoice-bot", description="Posts supplier invoices", actor=tenant_admin
    )
    send_invitation(email="new.colleague@example.com", invited_by=tenant_admin)
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, tenant_admin.username)
    tour = Tour()

    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/")
    expect(page.get_by_test_id("connections").locator("tbody tr")).to_have_count(12)
    tour.check(page, "the Connections tab", screenshot_as="connections-640")
    # The table scrolls in its own box at 640 px: only then is the box a
    # labelled region one can reach (and scroll) from the keyboard.
    scroller = page.locator(".table-scroll").filter(has=page.get_by_test_id("connections"))
    expect(scroller).not_to_have_attribute("tabindex", "0")
    page.set_viewport_size(REFLOW_VIEWPORT)
    expect(page.get_by_role("region", name="Connections table")).to_have_attribute("tabindex", "0")
    page.set_viewport_size(VIEWPORT)
    expect(scroller).not_to_have_attribute("tabindex", "0")

    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    expect(page.get_by_test_id("health-chart")).to_be_visible()
    tour.check(page, "a connection's page", screenshot_as="connection-640")

    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/add/")
    tour.check(page, "wizard step 1 (connector)", screenshot_as="wizard-connector-640")
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/")
    tour.check(page, "wizard step 2 (authentication)")
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/pat/")
    tour.check(page, "wizard step 3 (details)")
    # Every help text is the description the field points at.
    for field in page.locator("main form [aria-describedby]").all():
        for ref in (field.get_attribute("aria-describedby") or "").split():
            tour.expect(
                page.locator(f"#{ref}").count() == 1,
                f"wizard details: {field.get_attribute('name')} is described by #{ref}, "
                "which does not exist",
            )

    page.goto(f"{live_server.url}/tenant/health/")
    tour.check(page, "the health overview")
    page.goto(f"{live_server.url}/account/api-keys/")
    tour.check(page, "API keys", screenshot_as="api-keys-640")
    for path, where in (
        ("/tenant/", "tenant governance"),
        ("/tenant/folders/", "tenant folders"),
        ("/tenant/invitations/", "tenant invitations"),
        ("/tenant/workspaces/", "tenant personal workspaces"),
        ("/tenant/robots/", "tenant robot accounts"),
        ("/audit/", "the audit log"),
    ):
        page.goto(live_server.url + path)
        tour.check(page, where, screenshot_as="audit-640" if "audit" in path else None)
    page.goto(f"{live_server.url}/help/troubleshooting/")
    tour.check(page, "the troubleshooting guide")
    tour.assert_clean()


def test_results_and_form_errors_are_announced(
    page: Page, sandbox_on, tree, make_user, finance_connections, page_problems
):
    live_server = sandbox_on
    finance = tree["finance"]
    ada = make_user("ada")
    assign(ada, finance, "Automation Developer")
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    tour = Tour()

    # The Connections tab's filter: the count is a polite status line inside
    # the swapped table, so the new result is read out.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/")
    status = page.locator("#connection-table [role=status]")
    tour.expect(status.count() == 1, "connections list: no status line in #connection-table")
    if status.count() == 1:
        expect(status).to_have_text("12 connections")
    page.get_by_role("searchbox", name="Search connections").fill("sync 07")
    expect(page.get_by_test_id("connections").locator("tbody tr")).to_have_count(1)
    if status.count() == 1:
        expect(status).to_have_text("1 connection matches")
        tour.expect(
            status.get_attribute("aria-live") in (None, "polite"), "status line is not polite"
        )
    page.get_by_role("searchbox", name="Search connections").fill("nothing like it")
    expect(page.get_by_test_id("no-match")).to_be_visible()
    if status.count() == 1:
        expect(status).to_have_text("No connection matches")

    # The wizard's connector search.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/add/")
    search = page.get_by_test_id("connector-search")
    search.fill("sand")
    expect(page).to_have_url(re.compile(r"\?q=sand$"))
    expect(page.locator("#connector-list a[data-connector]")).to_have_count(1)
    status = page.locator("#connector-list [role=status]")
    tour.expect(status.count() == 1, "connector search: no status line in #connector-list")
    if status.count() == 1:
        expect(status).to_have_text("1 connector matches")
    search.fill("qzxwv")
    expect(page.locator("#connector-list a[data-connector]")).to_have_count(0)
    if status.count() == 1:
        expect(status).to_have_text("No connector matches")

    # A failed submit (a full page): the title says so, focus is on the error
    # summary, each field at fault is invalid and described by its error.
    page_problems.allow_console_error(r"status of 400 ")
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/pat/")
    page.get_by_label("Name").fill("")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("main .field-error").first).to_be_visible()
    page.wait_for_load_state("load")  # the deferred scripts have run
    tour.expect(
        page.title().startswith("Error: "), f"wizard: the title is {page.title()!r} after errors"
    )
    focused = page.evaluate(
        "document.activeElement.closest('[data-error-summary]') ? 'summary' "
        ": document.activeElement.getAttribute('aria-invalid') === 'true' ? 'field' "
        ": document.activeElement.tagName"
    )
    tour.expect(
        focused in ("summary", "field"), f"wizard: after errors focus is on {focused}, not errors"
    )
    tour.expect(
        page.locator("[data-error-summary] a[href='#id_name']").count() == 1,
        "wizard: the error summary does not link to the Name field",
    )
    for name in ("Name", "Sandbox token"):
        field = page.get_by_label(name, exact=True)
        described = (field.get_attribute("aria-describedby") or "").split()
        errors = [ref for ref in described if page.locator(f"#{ref}.field-errors").count()]
        tour.expect(
            field.get_attribute("aria-invalid") == "true", f"wizard: {name} is not aria-invalid"
        )
        tour.expect(bool(errors), f"wizard: {name} is not described by its error ({described})")
    page.set_viewport_size(REFLOW_VIEWPORT)
    screenshot(page, "wizard-errors-640")
    page.set_viewport_size(VIEWPORT)
    tour.check(page, "the wizard's details with errors")

    # A failed submit swapped in by htmx (API keys answer 400 with the form).
    page.goto(f"{live_server.url}/account/api-keys/")
    page.get_by_label("Lifetime (days)").fill("400")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("create-key-form").locator(".field-error")).to_have_count(2)
    summary = page.locator("[data-error-summary]")
    try:
        expect(page).to_have_title(re.compile(r"^Error: "), timeout=2000)
    except AssertionError:
        tour.expect(False, f"API keys: the title is {page.title()!r} after errors")
    tour.expect(summary.count() == 1, "API keys: no error summary")
    if summary.count() == 1:
        expect(summary).to_be_focused()
        expect(summary).to_contain_text("Give the key a name")
    # Corrected: the title loses its prefix.
    page.get_by_label("Name").fill("Invoice sync")
    page.get_by_label("Lifetime (days)").fill("30")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-key")).to_be_visible()
    expect(page).not_to_have_title(re.compile(r"^Error: "))
    tour.assert_clean()


def test_focus_ring_stands_out_on_light_and_dark_backgrounds(
    page: Page, live_server, tree, make_user, finance_connections
):
    ada = make_user("ada")
    assign(ada, tree["finance"], "Automation Developer")
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    page.goto(f"{live_server.url}/folders/{tree['finance'].pk}/connections/")
    tour = Tour()
    # Reached from the keyboard, so :focus-visible applies.
    for where, target in (
        ("the top bar (dark)", page.locator("header .topnav a").first),
        ("a panel (white)", page.get_by_test_id("add-connection")),
        ("a table link (white)", page.get_by_role("link", name="Finance ledger sync 01")),
        ("a field (white)", page.get_by_role("searchbox", name="Search connections")),
    ):
        target.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")
        expect(target).to_be_focused()
        ratio = focus_ring_contrast(target)
        tour.expect(ratio >= 3, f"focus ring on {where}: best contrast {ratio:.2f}:1 (3:1 needed)")
    page.get_by_role("link", name="Finance ledger sync 01").focus()
    screenshot(page, "focus-ring")
    tour.assert_clean()
