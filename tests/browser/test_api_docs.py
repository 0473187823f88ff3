"""The API's browsable documentation: served from our own static files under
the portal's Content-Security-Policy, and usable with an API key (Authorize,
then Try it out against /me)."""

import pytest
from playwright.sync_api import Page, expect

from portal import api_keys
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


def test_docs_page_lists_the_endpoints_and_tries_one(page: Page, live_server, make_user):
    robot_admin = make_user("root", is_superuser=True, is_staff=True)
    robot = api_keys.create_robot(name="nightly-sync", description="", actor=robot_admin)
    raw = api_keys.issue(owner=robot.user, name="docs", actor=robot_admin).raw

    page.goto(f"{live_server.url}/api/v1/docs")
    expect(page.get_by_text("Connections portal API").first).to_be_visible()
    expect(page.get_by_text("/api/v1/connections/{connection_id}/credentials")).to_be_visible()
    screenshot(page, "api-docs")

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    dialog.get_by_label("auth-bearer-value").fill(raw)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.locator("button.btn-done").click()

    page.get_by_text("/api/v1/me", exact=True).click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table").get_by_text('"nightly-sync"')).to_be_visible()
    screenshot(page, "api-docs-me")
