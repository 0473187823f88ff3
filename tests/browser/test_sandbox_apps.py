"""Bring your own OAuth 2.0 app with the Sandbox, from the pages alone: a
person registers an app on the Sandbox apps page, copies the client ID and
the client secret it shows once, gives them to the wizard's "Bring your own
OAuth 2.0 app", approves on the Sandbox consent page, and the connection is
Connected. Nothing is prepared behind the pages: no app is registered by the
test, not even the portal's own.
"""

import re

import pytest
from django.contrib.auth.hashers import check_password
from oauth2_provider.models import get_application_model
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Connection
from tests.browser.conftest import login, screenshot
from tests.browser.test_oauth import arrived, expect_consent_page, open_sandbox_auth_choices
from tests.factories import assign

VIEWPORT = {"width": 1280, "height": 800}
APP_NAME = "Finance sandbox app"


@pytest.fixture
def sandbox_server(live_server, settings):
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    assert get_catalog().get("sandbox") is not None  # the cache followed the settings
    return live_server


@pytest.fixture
def ada(tree, make_user):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    return user


def register_app(page: Page, live_server, name: str) -> None:
    """Top bar > Sandbox apps > name it > Register app."""
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Sandbox apps").click()
    arrived(page, f"{live_server.url}/sandbox/apps/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sandbox apps")
    page.get_by_label("App name", exact=True).fill(name)
    page.get_by_role("button", name="Register app").click()
    arrived(page, f"{live_server.url}/sandbox/apps/")


def copy_shown(page: Page, field: str) -> str:
    """Click the Copy button beside ``field`` and read what it put on the clipboard."""
    button = page.locator(f'button[data-copy="{field}"]')
    button.click()
    expect(button).to_have_text("Copied")
    return page.evaluate("navigator.clipboard.readText()")


def paste_into(page: Page, label: str) -> None:
    page.get_by_label(label, exact=True).focus()
    page.keyboard.press("ControlOrMeta+v")


def test_register_an_app_then_connect_with_it_as_bring_your_own_app(
    page: Page, sandbox_server, tree, ada
):
    live_server = sandbox_server
    finance = tree["finance"]
    callback = f"{live_server.url}/oauth/callback/"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")

    # Register an app: its client ID and secret are shown, the secret once.
    register_app(page, live_server, APP_NAME)
    new_app = page.get_by_test_id("new-app")
    expect(new_app.get_by_role("heading", level=2)).to_have_text(f"New app: {APP_NAME}")
    expect(new_app).to_contain_text("Copy the client secret now: you won't see it again.")
    app = get_application_model().objects.get(user=ada)
    expect(page.get_by_label("Client ID")).to_have_value(app.client_id)
    secret = page.get_by_label("Client secret").input_value()
    assert len(secret) >= 32
    assert check_password(secret, app.client_secret)  # stored hashed
    assert copy_shown(page, "new-client-id") == app.client_id
    row = page.get_by_test_id("apps").locator(f'tr[data-app="{app.pk}"]')
    expect(row.locator("td")).to_have_text(
        [APP_NAME, app.client_id, re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$"), callback, "Delete"]
    )
    expect(page.get_by_test_id("apps-redirect-uri")).to_have_text(callback)
    assert copy_shown(page, "new-client-secret") == secret
    screenshot(page, "01-apps-new-secret")

    # Never again: a reload shows the app, not its secret.
    page.reload()
    expect(page.get_by_test_id("new-app")).to_have_count(0)
    expect(page.get_by_test_id("apps").locator("tbody tr")).to_have_count(1)
    assert secret not in page.content()
    screenshot(page, "02-apps-after-reload")

    # Add connection > Sandbox > Bring your own OAuth 2.0 app, with the app.
    open_sandbox_auth_choices(page, live_server, finance)
    page.locator('a[data-auth="byoa"]').click()
    arrived(page, f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/byoa/")
    expect(page.get_by_test_id("redirect-uri")).to_have_value(callback)  # the app's
    page.get_by_label("Name").fill("Finance sandbox (own app)")
    page.get_by_label("Client ID").fill(app.client_id)
    paste_into(page, "Client Secret")  # the secret copied from the apps page
    assert page.get_by_label("Client Secret").input_value() == secret
    screenshot(page, "03-own-app-form")

    # The Sandbox's consent page names the person's app.
    page.get_by_role("button", name="Connect").click()
    params = expect_consent_page(page, live_server, ["profile", "records.read"], app=APP_NAME)
    assert params["client_id"] == app.client_id
    assert params["redirect_uri"] == callback
    screenshot(page, "04-consent")

    # Approve: back through the callback (the code exchanged with the hashed
    # secret's plain value) to the new connection, Connected.
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    connection = Connection.objects.get(folder=finance)
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    expect(page.get_by_role("status")).to_contain_text(
        "Finance sandbox (own app) is connected as ada."
    )
    expect(page.get_by_test_id("identity")).to_have_text("ada")
    expect(page.locator("dd", has_text="Bring your own OAuth 2.0 app")).to_be_visible()
    assert connection.own_app and connection.account_identity == "ada"
    assert connection.authenticated_by == ada
    assert secret not in page.content()
    screenshot(page, "05-connected")


def test_delete_an_app_after_confirming(page: Page, sandbox_server, ada):
    live_server = sandbox_server
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    register_app(page, live_server, "Throwaway app")
    register_app(page, live_server, "Kept app")
    rows = page.get_by_test_id("apps").locator("tbody tr")
    expect(rows.locator("td:first-child")).to_have_text(["Kept app", "Throwaway app"])

    page.get_by_role("link", name="Delete Throwaway app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete Throwaway app?")
    expect(page.get_by_text("Connections that use it stop working")).to_be_visible()
    screenshot(page, "01-confirm-delete")

    # Cancel keeps it; Delete app removes it.
    page.get_by_role("link", name="Cancel").click()
    arrived(page, f"{live_server.url}/sandbox/apps/")
    expect(rows).to_have_count(2)
    page.get_by_role("link", name="Delete Throwaway app").click()
    page.get_by_role("button", name="Delete app").click()
    arrived(page, f"{live_server.url}/sandbox/apps/")
    expect(page.get_by_role("status")).to_contain_text("App Throwaway app deleted.")
    expect(rows.locator("td:first-child")).to_have_text(["Kept app"])
    assert list(get_application_model().objects.values_list("name", flat=True)) == ["Kept app"]
    screenshot(page, "02-deleted")


def test_a_missing_name_is_said_and_registers_nothing(
    page: Page, sandbox_server, ada, page_problems
):
    live_server = sandbox_server
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    page_problems.allow_console_error(r"status of 400 .*/sandbox/apps/")
    register_app(page, live_server, "   ")
    expect(page.get_by_test_id("app-name-error")).to_have_text("Give the app a name.")
    expect(page.get_by_label("App name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("apps-empty")).to_be_visible()
    assert not get_application_model().objects.exists()
    screenshot(page, "01-name-required")
