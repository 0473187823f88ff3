"""The Connections tab and the add-connection wizard as a person uses them,
against the Sandbox connector, whose API the portal serves itself.

The portal's health check calls the live server over real HTTP
(``PORTAL_BASE_URL`` is the live server; the egress guard lets the Sandbox
reach its own loopback address by design), so nothing here is mocked.
Every step saves a screenshot; ``page_problems`` (conftest) fails a test on
any CSP violation or console error.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from connections import sandbox
from connections.actions import create
from connections.catalog import get_catalog
from connections.models import Connection, ConnectionEvent
from tests.browser.conftest import login, screenshot
from tests.factories import assign

# The size of the README's screenshot of the Connections tab.
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def sandbox_on(settings, live_server):
    """The Sandbox connector in the catalog, its API served by the live server."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    assert get_catalog().get("sandbox") is not None  # the cache followed the settings
    return live_server


def catalog_keys(page: Page) -> list[str]:
    return page.locator("#connector-list a[data-connector]").evaluate_all(
        "links => links.map(link => link.dataset.connector)"
    )


def search_catalog(page: Page, text: str) -> None:
    """Replace what the catalog search box holds by typing, as a person does."""
    search = page.get_by_test_id("connector-search")
    search.focus()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(text)
    # htmx pushes the URL once it has swapped in the answer for this query.
    expect(page).to_have_url(re.compile(r"\?q=" + re.escape(text) + "$"))


def history_rows(page: Page):
    return page.get_by_test_id("history").locator("tbody tr")


def test_developer_adds_checks_edits_disables_and_deletes_a_sandbox_connection(
    page: Page, sandbox_on, tree, make_user, page_problems, check_queue
):
    live_server = sandbox_on
    finance = tree["finance"]
    ada = make_user("ada")
    assign(ada, finance, "Automation Developer")
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")

    # A Sandbox token, shown once.
    page.get_by_role("link", name="Sandbox tokens").click()
    expect(page).to_have_url(f"{live_server.url}/sandbox/tokens/")
    page.get_by_label("Token name").fill("Finance robot")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").inner_text().strip()
    assert token.startswith("sbx_")
    expect(page.get_by_role("cell", name="Finance robot", exact=True)).to_be_visible()
    screenshot(page, "01-sandbox-token")

    # The folder's Connections tab: nothing yet.
    page.get_by_test_id("folder-tree").locator('a[data-folder="Finance"]').click()
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/")
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    screenshot(page, "02-empty")

    # Add connection, from the keyboard.
    page.get_by_test_id("add-connection").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/add/")
    search = page.get_by_test_id("connector-search")
    expect(search).to_be_focused()  # autofocus: one can type at once
    everything = catalog_keys(page)
    assert "sandbox" in everything and len(everything) > 1
    screenshot(page, "03-catalog")

    # The list filters as one types (htmx swaps #connector-list).
    search_catalog(page, "sand")
    expect(page.locator("#connector-list a[data-connector]")).to_have_count(1)
    assert catalog_keys(page) == ["sandbox"]
    screenshot(page, "04-catalog-sand")

    search_catalog(page, "qzxwv")
    expect(page.locator("#connector-list a[data-connector]")).to_have_count(0)
    expect(page.locator("#connector-list")).to_contain_text("No connector matches “qzxwv”.")
    screenshot(page, "05-catalog-no-match")

    # Category search: "Developer tools" finds the Sandbox too.
    search_catalog(page, "developer")
    expect(page.locator('#connector-list a[data-connector="sandbox"]')).to_be_visible()

    search_catalog(page, "sand")
    expect(page.locator("#connector-list a[data-connector]")).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.locator('a[data-connector="sandbox"]')).to_be_focused()
    page.keyboard.press("Enter")

    # The Sandbox offers several auth types: choose the personal access token.
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/")
    screenshot(page, "05b-auth-types")
    page.locator('a[data-auth="pat"]').click()
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/pat/")
    name = page.get_by_label("Name")
    secret = page.get_by_label("Sandbox token")
    expect(name).to_have_value("Sandbox")
    expect(secret).to_have_attribute("type", "password")
    expect(page.get_by_text("Use a service account here")).to_be_visible()
    screenshot(page, "06-details")

    # A wrong token: the provider's answer in plain words; the name stays,
    # the token does not.
    name.fill("Finance sandbox")
    page.get_by_label("Description").fill("Tries connections without internet access")
    secret.fill("sbx_not-a-real-token")
    page_problems.allow_console_error(r"status of 400 .*/connections/add/sandbox/pat/")
    page.get_by_role("button", name="Connect").click()
    error = page.get_by_test_id("connect-error")
    expect(error).to_contain_text(
        re.compile(
            r"Sandbox refused the credentials \(401\b.*\): the sandbox token is wrong, "
            r"expired or revoked\.",
            re.IGNORECASE,
        )
    )
    expect(error).to_contain_text('The provider said: "The access token is not valid."')
    expect(name).to_have_value("Finance sandbox")
    expect(page.get_by_label("Description")).to_have_value(
        "Tries connections without internet access"
    )
    expect(secret).to_have_value("")
    assert "sbx_not-a-real-token" not in page.content()
    assert not Connection.objects.exists()
    screenshot(page, "07-wrong-token")

    # The right token, submitted with Enter.
    secret.fill(token)
    secret.press("Enter")
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    connection = Connection.objects.get(folder=finance)
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    expect(page.get_by_role("status")).to_contain_text("Finance sandbox is connected as ada.")
    expect(page.get_by_test_id("identity")).to_have_text("ada")
    expect(page.get_by_role("heading", level=2, name="Finance sandbox")).to_be_visible()
    expect(history_rows(page).filter(has_text="Created")).to_have_count(1)
    assert token not in page.content()
    screenshot(page, "08-connected")

    # Back to the list: it is there, Connected, as ada.
    page.get_by_role("link", name="Connections", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/")
    row = page.get_by_test_id("connections").get_by_role(
        "row", name=re.compile(r"^Finance sandbox")
    )
    expect(row.get_by_test_id("status")).to_have_text("Connected")
    expect(row).to_contain_text("Sandbox")
    expect(row.get_by_role("cell", name="ada", exact=True)).to_have_count(2)  # account, creator
    screenshot(page, "09-list-connected")  # docs/screenshots/connections.png

    # The list's own search and status filter (htmx swaps #connection-table).
    page.get_by_role("searchbox", name="Search connections").fill("nothing like it")
    expect(page.get_by_test_id("no-match")).to_be_visible()
    page.get_by_role("searchbox", name="Search connections").fill("finance")
    expect(row).to_be_visible()
    page.get_by_label("Status").select_option(label="Disabled")
    expect(page.get_by_test_id("no-match")).to_be_visible()
    page.get_by_label("Status").select_option(label="Connected")
    expect(row).to_be_visible()
    screenshot(page, "10-list-filtered")

    # Edit: name and polling interval.
    row.get_by_role("link", name="Finance sandbox").click()
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page).to_have_url(
        f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/edit/"
    )
    expect(page.get_by_label("Name")).to_have_value("Finance sandbox")
    page.get_by_label("Name").fill("Finance sandbox (ops)")
    interval = page.get_by_label("Polling interval (seconds)")
    interval.fill("600")
    screenshot(page, "11-edit")
    interval.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Saved: name, polling interval.")
    expect(page.get_by_role("heading", level=2, name="Finance sandbox (ops)")).to_be_visible()
    expect(page.locator("dd", has_text="600 seconds")).to_be_visible()
    expect(history_rows(page).filter(has_text="Changed name, polling interval.")).to_have_count(1)
    screenshot(page, "12-edited")

    # Check now: a success message and one more history row.
    checks_before = history_rows(page).count()
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_test_id("check-progress")).to_be_visible()
    assert check_queue.run_all() == 1  # the worker's part
    expect(page.get_by_test_id("check-result")).to_have_text(
        re.compile(r"Check succeeded in \d+ ms\.")
    )
    expect(history_rows(page)).to_have_count(checks_before + 1)
    expect(history_rows(page).first).to_contain_text("Connected as ada.")
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    screenshot(page, "13-checked")

    # Disable, then enable.
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Finance sandbox (ops) is disabled: it is not used, refreshed or checked."
    )
    expect(page.get_by_test_id("status")).to_have_text("Disabled")
    expect(page.get_by_role("button", name="Check now")).to_have_count(0)
    expect(page.get_by_text("None: the connection is disabled")).to_be_visible()
    screenshot(page, "14-disabled")

    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("status")).to_contain_text("Finance sandbox (ops) is enabled.")
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    expect(page.get_by_role("button", name="Check now")).to_be_visible()
    screenshot(page, "15-enabled")

    # Delete, through a confirmation naming what stops working.
    page.get_by_role("link", name="Delete", exact=True).click()
    expect(page).to_have_url(
        f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/delete/"
    )
    expect(page.get_by_role("heading", name="Delete Finance sandbox (ops)?")).to_be_visible()
    expect(page.locator("main")).to_contain_text(
        "Automations in Finance that use Finance sandbox (ops) (Sandbox, as ada) will stop working"
    )
    screenshot(page, "16-confirm-delete")
    page.get_by_role("button", name="Delete connection").click()
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/")
    expect(page.get_by_role("status")).to_contain_text("Finance sandbox (ops) was deleted.")
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    assert not Connection.objects.filter(folder=finance).exists()
    assert not ConnectionEvent.objects.filter(connection_id=connection.pk).exists()
    screenshot(page, "17-deleted")


def test_automation_user_sees_and_checks_but_cannot_change(
    page: Page, sandbox_on, tree, make_user, page_problems, check_queue
):
    live_server = sandbox_on
    finance = tree["finance"]
    dev = make_user("dev")
    uma = make_user("uma")
    assign(dev, finance, "Automation Developer")
    assign(uma, finance, "Automation User")
    _, token = sandbox.issue_token(user=dev, name="Shared robot")
    sandbox_spec = get_catalog().get("sandbox")
    connection = create.create_secret_connection(
        folder=finance,
        connector=sandbox_spec,
        auth=sandbox_spec.auth_type("pat"),
        name="Team sandbox",
        description="",
        fields={},
        secret={"token": token},
        created_by=dev,
    )
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "uma")

    page.get_by_test_id("folder-tree").locator('a[data-folder="Finance"]').click()
    row = page.get_by_test_id("connections").get_by_role("row", name=re.compile(r"^Team sandbox"))
    expect(row.get_by_test_id("status")).to_have_text("Connected")
    expect(row.get_by_role("cell", name="dev", exact=True)).to_have_count(2)
    expect(page.get_by_test_id("add-connection")).to_have_count(0)
    screenshot(page, "01-list")

    row.get_by_role("link", name="Team sandbox").click()
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    expect(page.get_by_test_id("identity")).to_have_text("dev")
    for name in ("Edit", "Replace secret", "Delete"):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    for name in ("Disable", "Enable"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    screenshot(page, "02-detail")

    # Using the connection includes checking it.
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_test_id("check-progress")).to_be_visible()
    assert check_queue.run_all() == 1
    expect(page.get_by_test_id("check-result")).to_have_text(
        re.compile(r"Check succeeded in \d+ ms\.")
    )
    screenshot(page, "03-checked")

    # The hidden buttons are a courtesy: the server refuses the pages too.
    page_problems.allow_console_error(r"status of 403 .*/folders/\d+/connections/")
    base = f"{live_server.url}/folders/{finance.pk}/connections/"
    for path in ("add/", "add/sandbox/pat/", f"{connection.pk}/edit/", f"{connection.pk}/delete/"):
        response = page.goto(base + path)
        assert response.status == 403, path
    screenshot(page, "04-refused")
    assert Connection.objects.get(pk=connection.pk).name == "Team sandbox"
