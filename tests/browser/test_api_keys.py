"""API keys, robot accounts, the audit log and default connections as people
use them: each test signs in through the real form, clicks what a person
clicks and saves a screenshot of each key page; ``page_problems`` (conftest)
fails a test on any CSP violation or console error."""

import re

import pytest
from playwright.sync_api import Page, expect

from connections.models import Connection
from portal import api_keys, audit
from portal.models import ApiKey, AuditRecord, RobotAccount
from tests.browser.conftest import login, screenshot
from tests.factories import assign


@pytest.fixture
def sandbox_on(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


def key_row(page: Page, name: str):
    return page.get_by_test_id("keys").locator(f'tr[data-key="{name}"]')


def test_person_creates_copies_and_revokes_a_key(
    page: Page, live_server, tree, make_user, page_problems
):
    # The refused form is answered 400 (and swapped in by htmx).
    page_problems.allow_console_error(r"status of 400 .*/account/api-keys/")
    ada = make_user("ada")
    assign(ada, tree["finance"], "Automation Developer")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)

    login(page, live_server, "ada")
    page.get_by_role("link", name="API keys", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/account/api-keys/")
    expect(page.get_by_test_id("keys-empty")).to_contain_text("/api/v1/")
    expect(page.get_by_role("link", name="Read the API documentation")).to_have_attribute(
        "href", "/api/v1/docs"
    )
    expect(page.get_by_label("Lifetime (days)")).to_have_value("90")
    screenshot(page, "01-empty")

    # Errors show at their fields; what was typed stays.
    page.get_by_label("Lifetime (days)").fill("400")
    page.get_by_label("Limit to folder").select_option(label="Shared / Finance")
    page.get_by_role("button", name="Create key").click()
    form = page.get_by_test_id("create-key-form")
    expect(form.locator(".field-error")).to_have_count(2)
    expect(form.locator(".field", has=page.get_by_label("Name"))).to_contain_text(
        "Give the key a name"
    )
    expect(form.locator(".field", has=page.get_by_label("Lifetime (days)"))).to_contain_text(
        "between 1 and 365 days"
    )
    expect(page.get_by_label("Lifetime (days)")).to_have_value("400")
    expect(page.get_by_label("Limit to folder").locator("option:checked")).to_have_text(
        "Shared / Finance"
    )
    screenshot(page, "02-errors")

    page.get_by_label("Name").fill("Invoice sync")
    page.get_by_label("Lifetime (days)").fill("30")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_test_id("new-key")
    expect(new_key).to_contain_text("you won't see it again")
    raw = page.get_by_test_id("new-api-key").input_value()
    assert re.fullmatch(r"cpk_[A-Za-z0-9_-]{43}", raw)
    key = ApiKey.objects.get(user=ada)
    assert key.digest == api_keys.digest(raw) and key.folder == tree["finance"]
    row = key_row(page, "Invoice sync")
    expect(row).to_contain_text(f"cpk_{key.hint}…")
    expect(row).to_contain_text("Shared / Finance")
    expect(row).to_contain_text("Never")
    expect(row.get_by_test_id("key-status")).to_have_text("Active")
    # The form is empty again for the next key.
    expect(page.get_by_label("Name")).to_have_value("")
    screenshot(page, "03-created")

    new_key.get_by_role("button", name="Copy").click()
    expect(new_key.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == raw

    # Once: a reload shows the key's hint, never the key.
    page.reload()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    expect(key_row(page, "Invoice sync")).to_contain_text(f"cpk_{key.hint}…")
    assert raw not in page.content()
    screenshot(page, "04-after-reload")

    key_row(page, "Invoice sync").get_by_role("link", name="Revoke").click()
    expect(page).to_have_url(f"{live_server.url}/account/api-keys/{key.pk}/revoke/")
    expect(page.get_by_test_id("confirm-revoke")).to_contain_text(
        "Revoke the API key Invoice sync?"
    )
    screenshot(page, "05-confirm-revoke")
    page.get_by_role("button", name="Revoke key").click()
    expect(page).to_have_url(f"{live_server.url}/account/api-keys/")
    expect(page.get_by_role("status")).to_contain_text("The key Invoice sync")
    expect(key_row(page, "Invoice sync").get_by_test_id("key-status")).to_have_text("Revoked")
    expect(key_row(page, "Invoice sync").get_by_role("link", name="Revoke")).to_have_count(0)
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert raw not in page.content()
    screenshot(page, "06-revoked")


def test_tenant_admin_creates_a_robot_gives_it_a_role_and_a_key(
    page: Page, live_server, tree, tenant_admin, page_problems
):
    page_problems.allow_console_error(r"status of 400 .*/tenant/robots/")
    login(page, live_server, tenant_admin.username)
    page.get_by_role("link", name="Tenant settings").click()
    page.get_by_role("link", name="Robot accounts", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/tenant/robots/")
    expect(page.get_by_test_id("robots-empty")).to_be_visible()
    screenshot(page, "01-no-robots")

    page.get_by_label("Name").fill("Invoice Bot")
    page.get_by_label("Description").fill("Posts supplier invoices every night")
    page.get_by_role("button", name="Create robot account").click()
    form = page.get_by_test_id("create-robot-form")
    expect(form.locator(".field-error")).to_contain_text("lower-case letters")
    expect(page.get_by_label("Description")).to_have_value("Posts supplier invoices every night")
    screenshot(page, "02-name-refused")

    page.get_by_label("Name").fill("invoice-bot")
    page.get_by_role("button", name="Create robot account").click()
    robot = RobotAccount.objects.get(user__username="invoice-bot")
    expect(page).to_have_url(f"{live_server.url}/tenant/robots/{robot.pk}/")
    expect(page.get_by_role("status")).to_contain_text("Robot account invoice-bot created.")
    expect(page.get_by_test_id("robot-no-roles")).to_be_visible()
    expect(page.get_by_test_id("keys-empty")).to_be_visible()
    screenshot(page, "03-robot")

    # A robot is a user like any other on a folder's Access page.
    page.goto(f"{live_server.url}/folders/{tree['finance'].pk}/access/")
    access = page.locator("#assignment-form")
    access.get_by_label("User").fill("invoice-bot")
    access.get_by_label("Role").select_option(label="Automation User")
    access.get_by_role("button", name="Give role").click()
    expect(page.get_by_role("status")).to_contain_text("invoice-bot is now Automation User")
    expect(
        page.get_by_test_id("assignments").get_by_role("row", name=re.compile("invoice-bot"))
    ).to_be_visible()
    screenshot(page, "04-robot-role")

    page.goto(f"{live_server.url}/tenant/robots/{robot.pk}/")
    expect(page.get_by_test_id("robot-roles")).to_contain_text("Finance")
    page.get_by_label("Name").fill("production")
    page.get_by_label("Limit to folder").select_option(label="Shared / Finance")
    page.get_by_role("button", name="Create key").click()
    raw = page.get_by_test_id("new-api-key").input_value()
    key = ApiKey.objects.get(user=robot.user)
    assert key.digest == api_keys.digest(raw) and key.created_by == tenant_admin
    expect(key_row(page, "production")).to_contain_text("Shared / Finance")
    screenshot(page, "05-robot-key")

    page.reload()
    assert raw not in page.content()
    page.get_by_role("link", name="Robot accounts", exact=True).click()
    row = page.get_by_test_id("robots").get_by_role("row", name=re.compile("invoice-bot"))
    expect(row).to_contain_text("Posts supplier invoices every night")
    expect(row.get_by_role("cell").nth(2)).to_have_text("1")
    screenshot(page, "06-robot-list")


def test_tenant_admin_reads_and_filters_the_audit_log(
    page: Page, live_server, sandbox_on, tree, tenant_admin, make_user
):
    ada = make_user("ada")
    connection = Connection.objects.create(
        folder=tree["finance"], connector_key="sandbox", name="Sandbox production", auth_type="pat"
    )
    key = api_keys.issue(owner=ada, name="Nightly", actor=ada, ip="198.51.100.7").key
    for job in ("job-101", "job-102", "job-103"):
        audit.record(
            AuditRecord.Action.CREDENTIALS_READ,
            actor=ada,
            api_key=key,
            folder=tree["finance"],
            target=("connection", connection.pk, connection.name),
            job_id=job,
            ip="198.51.100.7",
            detail="pat of sandbox",
        )

    login(page, live_server, tenant_admin.username)
    page.goto(f"{live_server.url}/tenant/")
    page.get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(f"{live_server.url}/audit/")
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("job-103")  # newest first
    expect(rows.first).to_contain_text("Nightly (")
    expect(rows.first).to_contain_text("198.51.100.7")
    expect(rows.last).to_contain_text("API key created")
    screenshot(page, "01-audit-log")

    page.get_by_label("Action").select_option(label="Credentials read")
    page.get_by_label("Search").fill("job-102")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=credentials.read.*&q=job-102"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Sandbox production")
    screenshot(page, "02-audit-filtered")

    rows.first.get_by_role("link", name="Sandbox production").click()
    expect(page).to_have_url(
        f"{live_server.url}/folders/{tree['finance'].pk}/connections/{connection.pk}/"
    )
    reads = page.get_by_test_id("credential-reads").locator("tbody tr")
    expect(reads).to_have_count(3)
    expect(reads.first).to_contain_text("job-103")
    page.get_by_test_id("credential-reads").scroll_into_view_if_needed()
    screenshot(page, "03-connection-credential-reads")

    page.go_back()
    expect(page.get_by_role("link", name="Clear", exact=True)).to_be_visible()
    page.get_by_label("Search").fill("nobody at all")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("audit-no-match")).to_be_visible()
    screenshot(page, "04-audit-no-match")


def test_developer_makes_a_connection_the_folder_default(
    page: Page, live_server, sandbox_on, tree, make_user
):
    dev = make_user("dev")
    assign(dev, tree["finance"], "Automation Developer")
    first = Connection.objects.create(
        folder=tree["finance"], connector_key="sandbox", name="Sandbox main", auth_type="pat"
    )
    Connection.objects.create(
        folder=tree["finance"], connector_key="sandbox", name="Sandbox spare", auth_type="pat"
    )

    login(page, live_server, "dev")
    page.goto(f"{live_server.url}/folders/{tree['finance'].pk}/connections/")
    expect(page.get_by_test_id("connections").get_by_test_id("default-badge")).to_have_count(0)
    page.get_by_test_id("connections").get_by_role("link", name="Sandbox main").click()
    expect(page.get_by_test_id("default-note")).to_have_text("No")
    page.get_by_test_id("make-default").click()
    expect(page.get_by_role("status")).to_contain_text("Sandbox main is now the folder's default")
    expect(page.get_by_test_id("default-badge")).to_have_text("Default")
    expect(page.get_by_test_id("default-note")).to_contain_text("Yes")
    expect(page.get_by_test_id("clear-default")).to_be_visible()
    first.refresh_from_db()
    assert first.is_default
    screenshot(page, "01-connection-default")

    page.get_by_role("link", name="Connections", exact=True).click()
    table = page.get_by_test_id("connections")
    main_row = table.get_by_role("row", name=re.compile("Sandbox main"))
    expect(main_row.get_by_test_id("default-badge")).to_be_visible()
    expect(
        table.get_by_role("row", name=re.compile("Sandbox spare")).get_by_test_id("default-badge")
    ).to_have_count(0)
    screenshot(page, "02-list-badge")

    page.get_by_test_id("connections").get_by_role("link", name="Sandbox main").click()
    page.get_by_test_id("clear-default").click()
    expect(page.get_by_role("status")).to_contain_text("no longer the folder's default")
    expect(page.get_by_test_id("default-badge")).to_have_count(0)
    first.refresh_from_db()
    assert not first.is_default
