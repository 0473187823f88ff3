"""Going on after an OAuth 2.0 sign-in goes wrong, as a person does it in the
browser against the Sandbox authorization server in the live server:

* a wrong client secret with Bring your own OAuth 2.0 app: "Try again" opens
  the details form filled with everything but the secret, the error above;
* a redirect URI the provider does not know: the provider keeps the browser;
  the folder's Connections tab later says the sign-in never came back, with
  the URI to register, and offers Start again and Cancel;
* governance off: a developer is told it is the tenant's setting and led to
  their personal workspace;
* an answer from the provider after the portal session ended: a page saying
  to sign in and start again, no code in any URL.

Every step saves a screenshot; ``page_problems`` (conftest) fails a test on
any CSP violation or unexpected console error.
"""

import re
from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Connection, OAuthFlow
from connections.sandbox_provider import register_application
from portal.models import TenantSettings
from tests.browser.conftest import login, screenshot
from tests.factories import assign

VIEWPORT = {"width": 1280, "height": 800}
OWN_CLIENT_ID = "finance-own-sandbox-app"
OWN_CLIENT_SECRET = "own-app-secret-8f3c1d2e9a7b"
WRONG_SECRET = "not-the-secret-1234"


@pytest.fixture
def sandbox_oauth(live_server, settings):
    """The Sandbox authorization server in the live server and the portal's
    own app on it, as `make run` sets them up."""
    from connections.sandbox_provider import ensure_portal_app

    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    assert get_catalog().get("sandbox") is not None
    ensure_portal_app()
    return live_server


@pytest.fixture
def ada(tree, make_user):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    return user


def arrived(page: Page, url) -> None:
    expect(page).to_have_url(url)
    page.wait_for_load_state("load")


def open_own_app_form(page: Page, live_server, folder, *, redirect_uri: str) -> None:
    """Finance > Add connection > Sandbox > Bring your own OAuth 2.0 app."""
    register_application(
        name="Finance's own app",
        client_id=OWN_CLIENT_ID,
        client_secret=OWN_CLIENT_SECRET,
        redirect_uris=redirect_uri,
    )
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    page.get_by_test_id("folder-tree").locator(f'a[data-folder="{folder.name}"]').click()
    page.get_by_test_id("add-connection").click()
    arrived(page, f"{live_server.url}/folders/{folder.pk}/connections/add/")
    page.locator('#connector-list a[data-connector="sandbox"]').click()
    page.locator('a[data-auth="byoa"]').click()
    arrived(page, f"{live_server.url}/folders/{folder.pk}/connections/add/sandbox/byoa/")


def fill_own_app(page: Page, secret: str) -> None:
    page.get_by_label("Name").fill("Finance own app")
    page.get_by_label("Description").fill("Reads the payables records")
    page.get_by_label("Client ID").fill(OWN_CLIENT_ID)
    page.get_by_label("Client Secret").fill(secret)
    page.get_by_label("Scopes").fill("profile records.read records.write")


def expect_filled_from_the_flow(page: Page) -> None:
    expect(page.get_by_label("Name")).to_have_value("Finance own app")
    expect(page.get_by_label("Description")).to_have_value("Reads the payables records")
    expect(page.get_by_label("Client ID")).to_have_value(OWN_CLIENT_ID)
    expect(page.get_by_label("Scopes")).to_have_value("profile records.read records.write")
    expect(page.get_by_label("Client Secret")).to_have_value("")


def test_try_again_after_a_wrong_client_secret(page: Page, sandbox_oauth, tree, ada, page_problems):
    live_server = sandbox_oauth
    finance = tree["finance"]
    form_url = f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/byoa/"
    open_own_app_form(page, live_server, finance, redirect_uri=live_server.url + "/oauth/callback/")
    fill_own_app(page, WRONG_SECRET)
    screenshot(page, "01-wrong-secret-typed")

    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("sandbox-authorize")).to_be_visible()
    page_problems.allow_console_error(r"status of 400 .*/oauth/callback/")
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("The connection was not made")
    expect(page.get_by_test_id("oauth-error")).to_contain_text("Invalid client or secret")
    expect(page.get_by_text("except the client secret, which you type again")).to_be_visible()
    screenshot(page, "02-error-page")

    page.get_by_test_id("try-again").click()
    arrived(page, re.compile(re.escape(form_url) + r"\?retry=\d+$"))
    expect(page.get_by_test_id("connect-error")).to_contain_text("Invalid client or secret")
    expect_filled_from_the_flow(page)
    assert WRONG_SECRET not in page.content()
    screenshot(page, "03-try-again-form")

    page.get_by_label("Client Secret").fill(OWN_CLIENT_SECRET)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("sandbox-authorize")).to_be_visible()
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    connection = Connection.objects.get(folder=finance)
    assert (connection.name, connection.description) == (
        "Finance own app",
        "Reads the payables records",
    )
    expect(page.get_by_role("status")).to_contain_text("Finance own app is connected as ada.")
    # The failed flow served its turn; only the successful one is left.
    assert list(OAuthFlow.objects.values_list("completed_at", flat=True).distinct()) != [None]
    assert OAuthFlow.objects.filter(completed_at__isnull=True).count() == 0
    screenshot(page, "04-connected")


def test_a_sign_in_that_never_came_back_is_told_on_the_folder_page(
    page: Page, sandbox_oauth, tree, ada, page_problems
):
    live_server = sandbox_oauth
    finance = tree["finance"]
    folder_url = f"{live_server.url}/folders/{finance.pk}/connections/"
    callback = f"{live_server.url}/oauth/callback/"
    open_own_app_form(page, live_server, finance, redirect_uri="https://elsewhere.example/cb")
    fill_own_app(page, OWN_CLIENT_SECRET)
    page_problems.allow_console_error(r"status of 400 .*/sandbox/oauth/authorize/")
    page.get_by_role("button", name="Connect").click()
    # The provider shows its own error and never sends the browser back.
    expect(page.get_by_text("Mismatching redirect URI")).to_be_visible()
    screenshot(page, "01-provider-error")

    # A little later (the notice waits a minute: a sign-in may still be going on).
    page.goto(folder_url)
    expect(page.get_by_test_id("abandoned-sign-in")).to_have_count(0)
    OAuthFlow.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    page.reload()
    notice = page.get_by_test_id("abandoned-sign-in")
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text("did not come back")
    expect(notice).to_contain_text("Finance own app")
    expect(notice).to_contain_text("does not list the portal's redirect URI")
    expect(notice.get_by_test_id("abandoned-redirect-uri")).to_have_text(callback)
    screenshot(page, "02-folder-notice")

    notice.get_by_test_id("start-again").click()
    arrived(page, re.compile(r"/connections/add/sandbox/byoa/\?retry=\d+$"))
    expect(page.get_by_test_id("connect-error")).to_contain_text(callback)
    expect_filled_from_the_flow(page)
    screenshot(page, "03-start-again-form")

    # Not this time: back to the folder, and Cancel drops the sign-in.
    page.get_by_role("link", name="Cancel").click()
    arrived(page, folder_url)
    page.get_by_test_id("abandoned-sign-in").get_by_role("button", name="Cancel").click()
    arrived(page, folder_url)
    expect(page.get_by_role("status")).to_contain_text("was cancelled")
    expect(page.get_by_test_id("abandoned-sign-in")).to_have_count(0)
    assert not OAuthFlow.objects.exists()
    screenshot(page, "04-cancelled")


def test_governance_off_says_why_and_leads_to_the_workspace(
    page: Page, live_server, tree, ada, page_problems
):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": False}
    )
    finance = tree["finance"]
    workspace = ada.personal_workspace
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    page.get_by_test_id("folder-tree").locator('a[data-folder="Finance"]').click()
    arrived(page, f"{live_server.url}/folders/{finance.pk}/connections/")
    expect(page.get_by_test_id("add-connection")).to_have_count(0)
    note = page.get_by_test_id("governance-note")
    expect(note).to_contain_text("only administrators add connections in shared folders")
    screenshot(page, "01-folder-note")

    # The wizard's address typed anyway.
    page_problems.allow_console_error(r"status of 403 .*/connections/add/")
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/add/")
    refusal = page.get_by_test_id("governance-refusal")
    expect(refusal).to_contain_text(
        "The tenant's governance setting allows only administrators to create connections "
        "in shared folders."
    )
    expect(page.get_by_text("You do not have")).to_have_count(0)
    screenshot(page, "02-wizard-refused")

    page.get_by_test_id("workspace-link").click()
    arrived(page, f"{live_server.url}/folders/{workspace.pk}/connections/add/")
    expect(page.locator("main").get_by_role("heading", level=2)).to_have_text("Add connection")
    screenshot(page, "03-workspace-wizard")

    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/")
    page.get_by_test_id("governance-note").get_by_role("link").click()
    arrived(page, f"{live_server.url}/folders/{workspace.pk}/connections/")
    expect(page.get_by_test_id("add-connection")).to_be_visible()


def test_an_answer_after_the_session_ended_asks_to_sign_in_again(
    page: Page, live_server, page_problems
):
    code, state = "Xq9secretAuthCode0123456789", "someStateValue_abcdefghijklmnop"
    page.set_viewport_size(VIEWPORT)
    page_problems.allow_console_error(r"status of 400 .*/oauth/callback/")
    with page.expect_response(re.compile(r"/oauth/callback/")) as answer:
        page.goto(f"{live_server.url}/oauth/callback/?code={code}&state={state}")
    assert answer.value.status == 400
    assert answer.value.headers["referrer-policy"] == "no-referrer"
    expect(page).to_have_url(re.compile(r"/oauth/callback/\?code="))  # not sent on to the login
    expect(page.get_by_test_id("oauth-error")).to_contain_text(
        "Sign in, then start the connection again."
    )
    screenshot(page, "01-signed-out")

    page.get_by_test_id("sign-in").click()
    arrived(page, f"{live_server.url}/accounts/login/")
    assert code not in unquote(page.url) and state not in unquote(page.url)
    screenshot(page, "02-login")
