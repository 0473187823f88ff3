"""The audit log as people use it: a folder administrator opens their
folder's audit log from its Access tab, sees only what happened there and
below, filters it by user and downloads it as CSV; a tenant administrator
narrows the whole log by folder and date. Screenshots of each."""

from __future__ import annotations

import csv
import io

from playwright.sync_api import Page, expect

from connections.actions import lifecycle
from portal import actions
from portal.models import AuditRecord
from tests.browser.conftest import login, screenshot
from tests.factories import ConnectionFactory, assign


def test_a_folder_administrator_reads_and_downloads_their_folders_log(
    page: Page, live_server, tree, make_user, tenant_admin
):
    boss, ada = make_user("boss"), make_user("ada")
    assign(boss, tree["finance"], "Folder Administrator")
    ledger = ConnectionFactory(folder=tree["payables"], name="Ledger", sandbox=True)
    lifecycle.set_enabled(connection=ledger, enabled=False, actor=ada)
    lifecycle.set_enabled(connection=ledger, enabled=True, actor=boss)
    people = ConnectionFactory(folder=tree["hr"], name="People", sandbox=True)
    lifecycle.set_enabled(connection=people, enabled=False, actor=tenant_admin)
    actions.set_governance(allow_shared_connection_creation=False, changed_by=tenant_admin)

    login(page, live_server, "boss")
    page.goto(f"{live_server.url}/folders/{tree['finance'].pk}/access/")
    page.get_by_test_id("folder-audit-link").click()
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows).to_have_count(2)  # Payables is below Finance; HR and the tenant's are not
    expect(rows.first).to_contain_text("Connection enabled")
    expect(page.get_by_test_id("audit")).not_to_contain_text("People")
    screenshot(page, "folder-administrator-log")

    page.get_by_label("User").fill("ada")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Connection disabled")
    expect(rows.first).to_contain_text("ada")
    screenshot(page, "filtered-by-user")

    with page.expect_download() as download:
        page.get_by_test_id("audit-csv").click()
    text = download.value.path().read_text()
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][:4] == ["time", "actor", "api_key", "action"]
    assert [(line[1], line[3]) for line in lines[1:]] == [("ada", "connection.disabled")]


def test_a_tenant_administrator_narrows_the_whole_log(
    page: Page, live_server, tree, tenant_admin, page_problems
):
    # The reversed range is answered 400, with the form and its message.
    page_problems.allow_console_error(r"status of 400 ")
    for folder in ("finance", "hr"):
        ConnectionFactory(folder=tree[folder], name=f"{folder} connection", sandbox=True)
        lifecycle.set_enabled(
            connection=tree[folder].connections.get(), enabled=False, actor=tenant_admin
        )
    actions.set_governance(allow_shared_connection_creation=False, changed_by=tenant_admin)
    login(page, live_server, tenant_admin.username)
    page.goto(f"{live_server.url}/tenant/")
    page.get_by_role("link", name="Audit log").click()
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows).to_have_count(3)
    filters = page.get_by_test_id("audit-filters")
    filters.get_by_label("Folder").select_option(label="HR")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("hr connection")
    filters.get_by_label("Action").select_option(AuditRecord.Action.GOVERNANCE_CHANGED)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("audit-no-match")).to_be_visible()
    screenshot(page, "no-match")
    page.get_by_role("link", name="Clear").click()
    filters.get_by_label("From").fill("2030-01-02")
    filters.get_by_label("To").fill("2030-01-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("audit-filter-errors")).to_contain_text(
        "The end of the range is before its start."
    )
    screenshot(page, "reversed-range")
