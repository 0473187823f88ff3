"""OAuth 2.0 connections as a person makes them in the browser, against the
Sandbox authorization server (django-oauth-toolkit) that the live server
serves itself: the full redirect to the provider's consent page and back,
Reconnect, Bring your own OAuth 2.0 app with a missing mandatory scope, and
a cancelled sign-in.

The user is signed in to the portal, and the sandbox provider uses the same
accounts, so its consent page asks only to approve. The code exchange and
the identity check go over real HTTP to the live server. Every step saves a
screenshot; ``page_problems`` (conftest) fails a test on any CSP violation
or console error, the provider's pages included.
"""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Connection, ConnectionEvent, OAuthFlow
from connections.sandbox_provider import SANDBOX_CLIENT_ID, register_application
from tests.browser.conftest import login, screenshot
from tests.factories import assign

VIEWPORT = {"width": 1280, "height": 800}
AUTHORIZE_PATH = "/sandbox/oauth/authorize/"
OWN_CLIENT_ID = "finance-own-sandbox-app"
OWN_CLIENT_SECRET = "own-app-secret-8f3c1d2e9a7b"
# Auth choices the Sandbox offers, in the catalog's order (there may be more).
AUTH_CHOICES = {
    "pat": "Personal Access Token (PAT)",
    "oauth2_authorization_code": "OAuth 2.0 Authorization code",
    "byoa": "Bring your own OAuth 2.0 app",
    "oauth2_password": "OAuth 2.0 Password",
}


@pytest.fixture
def sandbox_oauth(live_server, settings):
    """The Sandbox authorization server in the live server, and the portal's
    own app registered on it, as `make run` sets them up (the same as
    tests/connections/conftest.py's fixture)."""
    from connections.sandbox_provider import ensure_portal_app

    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    assert get_catalog().get("sandbox") is not None  # the cache followed the settings
    ensure_portal_app()
    return live_server


@pytest.fixture
def ada(tree, make_user):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    return user


def history_rows(page: Page):
    return page.get_by_test_id("history").locator("tbody tr")


def authorize_url_re(live_server) -> re.Pattern:
    return re.compile("^" + re.escape(live_server.url + AUTHORIZE_PATH) + r"\?")


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def arrived(page: Page, url) -> None:
    """On the page at ``url``, its deferred scripts run (htmx has wired the
    forms, copy.js listens): only then is it used, as a person would."""
    expect(page).to_have_url(url)
    page.wait_for_load_state("load")


def open_sandbox_auth_choices(page: Page, live_server, folder) -> None:
    """Finance > Connections > Add connection > "sand" > Sandbox."""
    page.get_by_test_id("folder-tree").locator(f'a[data-folder="{folder.name}"]').click()
    expect(page).to_have_url(f"{live_server.url}/folders/{folder.pk}/connections/")
    page.get_by_test_id("add-connection").click()
    arrived(page, f"{live_server.url}/folders/{folder.pk}/connections/add/")
    page.get_by_test_id("connector-search").fill("sand")
    expect(page).to_have_url(re.compile(r"\?q=sand$"))
    expect(page.locator("#connector-list a[data-connector]")).to_have_count(1)
    page.locator('#connector-list a[data-connector="sandbox"]').click()
    expect(page).to_have_url(f"{live_server.url}/folders/{folder.pk}/connections/add/sandbox/")


def expect_consent_page(
    page: Page, live_server, scopes: list[str], app: str = "Connections portal"
) -> dict[str, str]:
    """The sandbox provider's consent page (django-oauth-toolkit's view with
    the portal's templates/oauth2_provider/authorize.html, in the portal's
    shell); returns the authorize request's parameters."""
    expect(page).to_have_url(authorize_url_re(live_server))
    consent = page.get_by_test_id("sandbox-authorize")
    expect(consent.get_by_role("heading", level=1)).to_have_text(f"Authorize {app}?")
    expect(consent).to_contain_text(f"{app} asks to act as ada with these permissions:")
    descriptions = {
        "profile": "Read your name and e-mail address",
        "records.read": "Read your sandbox records",
        "records.write": "Change your sandbox records",
    }
    expect(consent.locator("li")).to_have_text([descriptions[scope] for scope in scopes])
    expect(consent.get_by_role("button", name="Authorize")).to_be_visible()
    expect(consent.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.get_by_test_id("current-user")).to_have_text("ada")
    # Styled by the portal's stylesheet, not django-oauth-toolkit's own.
    sheets = page.evaluate("[...document.styleSheets].map(sheet => sheet.href)")
    assert any(href and href.endswith("/static/portal/portal.css") for href in sheets), sheets
    return query_of(page.url)


def test_developer_connects_sandbox_through_the_oauth_redirect_then_reconnects(
    page: Page, sandbox_oauth, tree, ada
):
    live_server = sandbox_oauth
    finance = tree["finance"]
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")

    # Add connection > "sand" > Sandbox: the ways to authenticate, each a link.
    open_sandbox_auth_choices(page, live_server, finance)
    choices = page.get_by_test_id("auth-types").locator("a[data-auth]")
    expect(choices).to_contain_text(list(AUTH_CHOICES.values()))  # in this order
    for key, label in AUTH_CHOICES.items():
        expect(page.locator(f'a[data-auth="{key}"]')).to_have_text(label)
    screenshot(page, "01-auth-choices")

    # OAuth 2.0 Authorization code with the portal's own app: fixed scopes.
    page.locator('a[data-auth="oauth2_authorization_code"]').click()
    arrived(
        page,
        f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/oauth2_authorization_code/",
    )
    expect(page.locator("main").get_by_role("heading", level=2)).to_have_text(
        re.compile(r"Sandbox · OAuth 2.0 Authorization code")
    )
    expect(page.get_by_test_id("fixed-scopes")).to_contain_text("profile, records.read")
    expect(page.get_by_label("Client ID")).to_have_count(0)
    expect(page.get_by_label("Name")).to_have_value("Sandbox")
    page.get_by_label("Name").fill("Finance sandbox (OAuth)")
    page.get_by_label("Description").fill("Signed in through the sandbox provider")
    screenshot(page, "02-details")

    # Connect: htmx answers HX-Redirect, the browser goes to the provider.
    page.get_by_role("button", name="Connect").click()
    params = expect_consent_page(page, live_server, ["profile", "records.read"])
    assert params["client_id"] == SANDBOX_CLIENT_ID
    assert params["redirect_uri"] == f"{live_server.url}/oauth/callback/"
    assert params["scope"] == "profile records.read"
    assert params["code_challenge_method"] == "S256" and params["code_challenge"]
    assert OAuthFlow.objects.filter(state=params["state"], user=ada).exists()
    assert not Connection.objects.exists()  # nothing until the provider answers
    screenshot(page, "03-provider-consent")

    # Approve: back through /oauth/callback/ to the new connection, Connected.
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    connection = Connection.objects.get(folder=finance)
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    expect(page.get_by_role("status")).to_contain_text(
        "Finance sandbox (OAuth) is connected as ada."
    )
    expect(page.get_by_role("heading", level=2, name="Finance sandbox (OAuth)")).to_be_visible()
    expect(page.get_by_test_id("identity")).to_have_text("ada")
    expect(page.locator("dd", has_text="OAuth 2.0 Authorization code")).to_be_visible()
    expect(page.get_by_text("Access token expires")).to_be_visible()
    expect(page.get_by_test_id("warning")).to_have_count(0)  # a refresh token came too
    expect(history_rows(page)).to_have_count(1)
    expect(history_rows(page).first).to_contain_text("Created")
    expect(history_rows(page).first).to_contain_text("Authenticated as ada.")
    reconnect = page.get_by_test_id("reconnect")
    expect(reconnect).to_have_text("Reconnect")
    assert connection.auth_type == "oauth2_authorization_code" and not connection.own_app
    assert connection.account_identity == "ada" and connection.authenticated_by == ada
    assert params["code_challenge"] not in page.content()
    screenshot(page, "04-connected")

    # The list shows it Connected, as ada.
    page.get_by_role("link", name="Connections", exact=True).click()
    row = page.get_by_test_id("connections").get_by_role(
        "row", name=re.compile(r"^Finance sandbox \(OAuth\)")
    )
    expect(row.get_by_test_id("status")).to_have_text("Connected")
    screenshot(page, "05-list")

    # Reconnect: only the credentials change, through the provider again.
    row.get_by_role("link", name="Finance sandbox (OAuth)").click()
    page.get_by_test_id("reconnect").click()
    arrived(page, f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/reconnect/")
    expect(page.locator("main").get_by_role("heading", level=2)).to_have_text(
        re.compile(r"Reconnect Finance sandbox \(OAuth\)")
    )
    expect(page.get_by_text("The connection keeps its name, folder and id")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_count(0)  # edited on the Edit page
    screenshot(page, "06-reconnect-form")

    page.get_by_role("button", name="Connect").click()
    again = expect_consent_page(page, live_server, ["profile", "records.read"])
    assert again["state"] != params["state"]
    assert again["code_challenge"] != params["code_challenge"]
    screenshot(page, "07-reconnect-consent")

    page.get_by_role("button", name="Authorize").click()
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    expect(page.get_by_role("status")).to_contain_text(
        "Finance sandbox (OAuth) is connected as ada."
    )
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    expect(page.get_by_test_id("identity")).to_have_text("ada")
    expect(history_rows(page)).to_have_count(2)
    expect(history_rows(page).filter(has_text="Reconnected")).to_have_count(1)
    expect(history_rows(page).filter(has_text="Reconnected")).to_contain_text(
        "Authenticated as ada."
    )
    assert Connection.objects.filter(folder=finance).count() == 1
    assert list(
        ConnectionEvent.objects.filter(connection=connection)
        .order_by("created_at", "pk")
        .values_list("kind", flat=True)
    ) == [ConnectionEvent.Kind.CREATED, ConnectionEvent.Kind.RECONNECTED]
    screenshot(page, "08-reconnected")


def open_own_app_form(page: Page, live_server, folder) -> None:
    """Add connection > Sandbox > Bring your own OAuth 2.0 app, with the
    user's app registered at the sandbox provider."""
    register_application(
        name="Finance's own app",
        client_id=OWN_CLIENT_ID,
        client_secret=OWN_CLIENT_SECRET,
        redirect_uris=live_server.url + "/oauth/callback/",
    )
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    open_sandbox_auth_choices(page, live_server, folder)
    page.locator('a[data-auth="byoa"]').click()
    arrived(page, f"{live_server.url}/folders/{folder.pk}/connections/add/sandbox/byoa/")
    expect(page.locator("main").get_by_role("heading", level=2)).to_have_text(
        re.compile(r"Sandbox · Bring your own OAuth 2\.0 app")
    )
    expect(page.get_by_test_id("fixed-scopes")).to_have_count(0)
    expect(page.get_by_label("Client Secret")).to_have_attribute("type", "password")
    expect(page.get_by_label("Scopes")).to_have_value("profile records.read")  # defaults
    expect(page.get_by_text("Mandatory: profile.")).to_be_visible()


def test_own_app_connects_through_the_provider(page: Page, sandbox_oauth, tree, ada):
    live_server = sandbox_oauth
    finance = tree["finance"]
    callback = f"{live_server.url}/oauth/callback/"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    open_own_app_form(page, live_server, finance)

    # The redirect URI to register at the provider: read-only, with a Copy button.
    redirect_uri = page.get_by_test_id("redirect-uri")
    expect(redirect_uri).to_have_value(callback)
    expect(redirect_uri).to_have_attribute("readonly", "")
    expect(page.get_by_label("Redirect URI")).to_have_value(callback)
    copy = page.locator('button[data-copy="redirect-uri"]')
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == callback
    screenshot(page, "01-own-app-form")

    page.get_by_label("Name").fill("Finance own app")
    page.get_by_label("Client ID").fill(OWN_CLIENT_ID)
    page.get_by_label("Client Secret").fill(OWN_CLIENT_SECRET)
    page.get_by_label("Scopes").fill("profile records.read records.write")
    screenshot(page, "02-filled")

    # The provider names the app that asks: the user's own.
    page.get_by_role("button", name="Connect").click()
    params = expect_consent_page(
        page,
        live_server,
        ["profile", "records.read", "records.write"],
        app="Finance's own app",
    )
    assert params["client_id"] == OWN_CLIENT_ID
    assert params["redirect_uri"] == callback
    assert OWN_CLIENT_SECRET not in page.url
    screenshot(page, "03-own-app-consent")

    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    connection = Connection.objects.get(folder=finance)
    assert connection.own_app and connection.account_identity == "ada"
    expect(page).to_have_url(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    expect(page.get_by_role("status")).to_contain_text("Finance own app is connected as ada.")
    expect(page.get_by_test_id("identity")).to_have_text("ada")
    expect(page.locator("dd", has_text="Bring your own OAuth 2.0 app")).to_be_visible()
    expect(page.get_by_role("link", name="Replace client secret")).to_be_visible()
    expect(page.get_by_test_id("reconnect")).to_have_text("Reconnect")
    assert OWN_CLIENT_SECRET not in page.content()
    screenshot(page, "04-own-app-connected")


# The authorization-code form is posted with htmx, and a refused form answers
# 400: htmx is configured (templates/base.html) to swap 400 answers in.
def test_own_app_without_the_mandatory_scope_shows_the_missing_scope(
    page: Page, sandbox_oauth, tree, ada, page_problems
):
    live_server = sandbox_oauth
    finance = tree["finance"]
    form_url = f"{live_server.url}/folders/{finance.pk}/connections/add/sandbox/byoa/"
    open_own_app_form(page, live_server, finance)
    expect(page.get_by_test_id("redirect-uri")).to_have_value(f"{live_server.url}/oauth/callback/")
    screenshot(page, "01-own-app-form")

    # Without the mandatory "profile": refused before any redirect.
    page.get_by_label("Name").fill("Finance own app")
    page.get_by_label("Client ID").fill(OWN_CLIENT_ID)
    page.get_by_label("Client Secret").fill(OWN_CLIENT_SECRET)
    page.get_by_label("Scopes").fill("records.read")
    page_problems.allow_console_error(r"status of 400 .*/connections/add/sandbox/byoa/")
    with page.expect_response(form_url) as answer:
        page.get_by_role("button", name="Connect").click()
    assert answer.value.status == 400
    # What the server says (this part holds today).
    assert "Insufficient scopes: the connector needs profile." in answer.value.text()
    assert not Connection.objects.exists()
    assert not OAuthFlow.objects.exists()  # the provider was never asked

    # What the person sees.
    error = page.get_by_test_id("connect-error")
    try:
        expect(error).to_contain_text(
            "Insufficient scopes: the connector needs profile.", timeout=2_000
        )
    finally:
        screenshot(page, "02-missing-scope")  # the error, or (the bug) none
    expect(page).to_have_url(form_url)
    expect(page.get_by_label("Client ID")).to_have_value(OWN_CLIENT_ID)
    expect(page.get_by_label("Scopes")).to_have_value("records.read")
    expect(page.get_by_label("Name")).to_have_value("Finance own app")
    expect(page.get_by_label("Client Secret")).to_have_value("")  # a secret is not sent back
    assert OWN_CLIENT_SECRET not in page.content()
    assert not Connection.objects.exists()


def test_cancelling_at_the_provider_stores_nothing(
    page: Page, sandbox_oauth, tree, ada, page_problems
):
    live_server = sandbox_oauth
    finance = tree["finance"]
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")

    open_sandbox_auth_choices(page, live_server, finance)
    page.locator('a[data-auth="oauth2_authorization_code"]').click()
    arrived(page, re.compile(r"/connections/add/sandbox/oauth2_authorization_code/$"))
    page.get_by_role("button", name="Connect").click()
    expect_consent_page(page, live_server, ["profile", "records.read"])
    screenshot(page, "01-provider-consent")

    page_problems.allow_console_error(r"status of 400 .*/oauth/callback/")
    page.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(re.compile(re.escape(f"{live_server.url}/oauth/callback/") + r"\?"))
    assert query_of(page.url)["error"] == "access_denied"
    expect(page.get_by_role("heading", level=1)).to_have_text("The connection was not made")
    error = page.get_by_test_id("oauth-error")
    expect(error).to_contain_text(
        "Access denied: the sign-in at Sandbox was cancelled or consent was refused, "
        "so no connection was made."
    )
    expect(page.get_by_text("Nothing was stored.")).to_be_visible()
    assert not Connection.objects.exists()
    assert not OAuthFlow.objects.filter(used_at__isnull=True).exists()  # not reusable
    screenshot(page, "02-access-denied")

    # The folder's Connections tab is still empty.
    page.get_by_test_id("folder-tree").locator('a[data-folder="Finance"]').click()
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    screenshot(page, "03-still-empty")
