"""A tenant administrator turns read-only mode on in Governance, as a person
does: the box, Save, the page saying so; then the API refuses a change and
still reads. Screenshots of the page before and after."""

from __future__ import annotations

import requests
from playwright.sync_api import Page, expect

from portal import api_keys
from portal.models import AuditRecord, TenantSettings
from tests.browser.conftest import login, screenshot
from tests.factories import ConnectionFactory, assign


def test_tenant_admin_turns_read_only_mode_on(
    page: Page, live_server, tree, tenant_admin, settings
):
    settings.PORTAL_BASE_URL = live_server.url
    robot = api_keys.create_robot(name="ci-bot", description="", actor=tenant_admin).user
    assign(robot, tree["finance"], "Automation Developer")
    raw = api_keys.issue(owner=robot, name="ci", actor=tenant_admin).raw
    connection = ConnectionFactory(folder=tree["finance"], name="Robot", sealed=True)

    login(page, live_server, "root")
    page.get_by_role("link", name="Tenant settings").click()
    expect(page).to_have_url(f"{live_server.url}/tenant/")
    box = page.get_by_label("Read-only API and command-line client")
    expect(box).not_to_be_checked()
    expect(page.get_by_text("managed in these pages only")).to_be_visible()
    screenshot(page, "01-governance-read-only-off")

    box.check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Governance settings saved.")).to_be_visible()
    expect(page.get_by_label("Read-only API and command-line client")).to_be_checked()
    # The other settings were kept as they were.
    expect(page.get_by_label("Allow users to create connections in shared folders")).to_be_checked()
    screenshot(page, "02-governance-read-only-on")
    assert TenantSettings.load().read_only is True
    assert AuditRecord.objects.filter(
        action=AuditRecord.Action.TENANT_SETTINGS_CHANGED,
        detail="Read-only API and command-line client: off → on",
    ).exists()

    headers = {"Authorization": f"Bearer {raw}"}
    api = f"{live_server.url}/api/v1"
    refused = requests.post(
        f"{api}/connections/{connection.pk}/disable", headers=headers, timeout=10
    )
    assert refused.status_code == 403
    detail = refused.json()["detail"]
    assert "read-only mode: connections are managed in the portal's pages" in detail
    assert detail.endswith(f"Go to {live_server.url}/")
    read = requests.get(f"{api}/connections/{connection.pk}", headers=headers, timeout=10)
    assert read.status_code == 200 and read.json()["is_enabled"] is True

    # And off again, from the same page.
    page.get_by_label("Read-only API and command-line client").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Governance settings saved.")).to_be_visible()
    expect(page.get_by_label("Read-only API and command-line client")).not_to_be_checked()
    allowed = requests.post(
        f"{api}/connections/{connection.pk}/disable", headers=headers, timeout=10
    )
    assert allowed.status_code == 200
