"""The authorize URL each shipped OAuth 2.0 connector sends the browser to.

Every expected URL below is written by hand from the provider's own page about
its authorization endpoint (cited in the comment above it), not from the
connector definition: a wrong scope, separator, extra parameter, host or path
in a definition makes its test fail. URLs are compared as scheme, host and path
exactly, and the query as a dict of parameters (order does not matter; ``%20``
and ``+`` both mean a space).

Where a provider's page does not list ``response_type=code`` (Slack, GitHub,
HubSpot) it is still expected: RFC 6749 section 4.1.1 requires it, the portal
always sends it, and those providers ignore it.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from connections.catalog import BUILTIN_DEFINITIONS, AuthKind, get_catalog, load_catalog
from connections.oauth import build_authorize_url

CLIENT_ID = "client-123"
STATE = "state-xyz"
# 64 characters from RFC 7636's unreserved set.
VERIFIER = "pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKL"
# BASE64URL(SHA256(VERIFIER)) without padding (RFC 7636 section 4.2), worked out
# once and written here; test_code_challenge_is_s256_of_the_verifier checks it.
CHALLENGE = "ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0"
REDIRECT_TO = "https://portal.example.com/oauth/callback/"
PORTAL = "https://portal.example.com"

EXPECTED = [
    # Salesforce, "OAuth 2.0 Web Server Flow for Web App Integration"
    # (docs_url: https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm&type=5):
    # GET https://login.salesforce.com/services/oauth2/authorize with response_type=code,
    # client_id, redirect_uri, scope (space-separated), state and code_challenge
    # (Salesforce takes S256 only; code_challenge_method is RFC 7636's).
    pytest.param(
        "salesforce",
        {"login_host": "login.salesforce.com"},
        "https://login.salesforce.com/services/oauth2/authorize"
        "?response_type=code&client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=api%20refresh_token%20openid&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="salesforce",
    ),
    # Same page: a sandbox org signs in at test.salesforce.com instead of login.salesforce.com.
    pytest.param(
        "salesforce",
        {"login_host": "test.salesforce.com"},
        "https://test.salesforce.com/services/oauth2/authorize"
        "?response_type=code&client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=api%20refresh_token%20openid&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="salesforce-sandbox-org",
    ),
    # Microsoft identity platform, "OAuth 2.0 authorization code flow", "Request an
    # authorization code" (docs_url:
    # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow):
    # https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize, tenant "common" for
    # work, school and personal accounts; scope space-separated, offline_access for a
    # refresh token, Graph scopes by short name (Graph is the default resource); PKCE S256.
    pytest.param(
        "microsoft_outlook",
        {"tenant": "common"},
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
        "?client_id=client-123&response_type=code"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=offline_access%20User.Read%20Mail.ReadWrite%20Mail.Send%20Calendars.ReadWrite"
        "&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="microsoft_outlook",
    ),
    # Same page: a single-tenant app uses its tenant's domain (or id) in the path.
    pytest.param(
        "microsoft_outlook",
        {"tenant": "contoso.onmicrosoft.com"},
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        "?client_id=client-123&response_type=code"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=offline_access%20User.Read%20Mail.ReadWrite%20Mail.Send%20Calendars.ReadWrite"
        "&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="microsoft_outlook-single-tenant",
    ),
    # Same page (docs_url:
    # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow),
    # with the OneDrive and SharePoint Graph scopes.
    pytest.param(
        "microsoft_onedrive",
        {"tenant": "common"},
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
        "?client_id=client-123&response_type=code"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=offline_access%20User.Read%20Files.ReadWrite.All%20Sites.ReadWrite.All"
        "&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="microsoft_onedrive",
    ),
    # Google, "Using OAuth 2.0 for Web Server Applications", step 1 "Set authorization
    # parameters" (docs_url: https://developers.google.com/identity/protocols/oauth2/web-server):
    # https://accounts.google.com/o/oauth2/v2/auth with client_id, redirect_uri,
    # response_type=code, scope (space-delimited full scope URLs), access_type=offline (a
    # refresh token), state, prompt=consent (a refresh token again on reconnect), PKCE S256.
    # include_granted_scopes is optional and left out on purpose: it would merge the grants
    # of the Gmail, Drive and Sheets connectors into one token.
    pytest.param(
        "google_gmail",
        {},
        "https://accounts.google.com/o/oauth2/v2/auth"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&response_type=code&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fgmail.modify"
        "&access_type=offline&state=state-xyz&prompt=consent"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="google_gmail",
    ),
    # Same page (docs_url: https://developers.google.com/identity/protocols/oauth2/web-server).
    pytest.param(
        "google_drive",
        {},
        "https://accounts.google.com/o/oauth2/v2/auth"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&response_type=code&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fdrive"
        "&access_type=offline&state=state-xyz&prompt=consent"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="google_drive",
    ),
    # Same page (docs_url: https://developers.google.com/identity/protocols/oauth2/web-server);
    # two scopes, separated by a space.
    pytest.param(
        "google_sheets",
        {},
        "https://accounts.google.com/o/oauth2/v2/auth"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&response_type=code"
        "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fspreadsheets"
        "%20https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fuserinfo.email"
        "&access_type=offline&state=state-xyz&prompt=consent"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="google_sheets",
    ),
    # Slack, "Installing with OAuth" (docs_url: https://api.slack.com/authentication/oauth-v2):
    # https://slack.com/oauth/v2/authorize?scope=...&client_id=...; scope holds the bot
    # scopes, comma-separated (user_scope would ask for user-token scopes: not used, the
    # connector acts as a bot); redirect_uri and state. PKCE only for apps switched to
    # public clients, so not sent.
    pytest.param(
        "slack",
        {},
        "https://slack.com/oauth/v2/authorize"
        "?scope=channels%3Aread%2Cchat%3Awrite%2Cusers%3Aread&client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&state=state-xyz&response_type=code",
        id="slack",
    ),
    # Atlassian, "Jira platform: OAuth 2.0 (3LO) apps", "Direct the user to the authorization
    # URL" (https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/; the
    # docs_url names the basic-auth page, the definition's comment this one):
    # https://auth.atlassian.com/authorize?audience=api.atlassian.com&client_id=...
    # &scope=A%20B&redirect_uri=...&state=...&response_type=code&prompt=consent.
    pytest.param(
        "jira",
        {"site_url": "https://acme.atlassian.net"},
        "https://auth.atlassian.com/authorize"
        "?audience=api.atlassian.com&client_id=client-123"
        "&scope=read%3Ajira-work%20write%3Ajira-work%20read%3Ajira-user%20offline_access"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&state=state-xyz&response_type=code&prompt=consent",
        id="jira",
    ),
    # Atlassian, "Confluence: OAuth 2.0 (3LO) apps"
    # (https://developer.atlassian.com/cloud/confluence/oauth-2-3lo-apps/; the docs_url names
    # the basic-auth page): the same authorize URL and parameters, Confluence scopes.
    pytest.param(
        "confluence",
        {"site_url": "https://acme.atlassian.net"},
        "https://auth.atlassian.com/authorize"
        "?audience=api.atlassian.com&client_id=client-123"
        "&scope=read%3Aconfluence-content.all%20read%3Aconfluence-space.summary"
        "%20write%3Aconfluence-content%20read%3Aconfluence-user%20offline_access"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&state=state-xyz&response_type=code&prompt=consent",
        id="confluence",
    ),
    # ServiceNow, "OAuth authorization code grant flow"
    # (https://www.servicenow.com/docs/r/platform-security/authentication/c_OAuthAuthorizationCodeFlow.html;
    # the docs_url names the Table API): https://<instance>.service-now.com/oauth_auth.do
    # ?response_type=code&redirect_uri=...&client_id=...&state=...; "useraccount" is the
    # instance's default OAuth scope. A confidential client with a secret: no PKCE.
    pytest.param(
        "servicenow",
        {"instance_url": "https://acme.service-now.com"},
        "https://acme.service-now.com/oauth_auth.do"
        "?response_type=code"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&client_id=client-123&state=state-xyz&scope=useraccount",
        id="servicenow",
    ),
    # Zendesk, "Using OAuth authentication with your application", step 1 "Send the user to
    # the Zendesk authorization page"
    # (https://support.zendesk.com/hc/en-us/articles/4408845965210, linked from the docs_url
    # https://developer.zendesk.com/api-reference/introduction/security-and-auth/):
    # https://{subdomain}.zendesk.com/oauth/authorizations/new?response_type=code
    # &redirect_uri=...&client_id=...&scope=read%20write (space-separated) and state; PKCE
    # from "Using PKCE to make Zendesk OAuth access tokens more secure"
    # (https://developer.zendesk.com/documentation/api-basics/authentication/oauth-pkce).
    pytest.param(
        "zendesk",
        {"subdomain": "acme"},
        "https://acme.zendesk.com/oauth/authorizations/new"
        "?response_type=code"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&client_id=client-123&scope=read%20write&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="zendesk",
    ),
    # HubSpot, "OAuth quickstart guide" / "Initiating OAuth access"
    # (https://developers.hubspot.com/docs/api/oauth-quickstart-guide, from the docs_url
    # https://developers.hubspot.com/docs/api/intro-to-auth):
    # https://app.hubspot.com/oauth/authorize?client_id=...&scope=contacts%20automation
    # &redirect_uri=...&state=...; scopes space-separated, "oauth" is the base scope.
    pytest.param(
        "hubspot",
        {},
        "https://app.hubspot.com/oauth/authorize"
        "?client_id=client-123"
        "&scope=oauth%20crm.objects.contacts.read%20crm.objects.contacts.write"
        "%20crm.objects.companies.read%20crm.objects.deals.read"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&state=state-xyz&response_type=code",
        id="hubspot",
    ),
    # GitHub, "Authorizing OAuth apps", web application flow, step 1
    # (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps;
    # the docs_url names the REST authentication page):
    # GET https://github.com/login/oauth/authorize with client_id, redirect_uri, scope
    # (space-delimited), state, code_challenge and code_challenge_method=S256 (S256 only).
    pytest.param(
        "github",
        {},
        "https://github.com/login/oauth/authorize"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=repo%20read%3Auser%20user%3Aemail&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256"
        "&response_type=code",
        id="github",
    ),
    # GitLab, "OAuth 2.0 identity provider API", authorization code with PKCE
    # (https://docs.gitlab.com/api/oauth2/; the docs_url names the PAT page):
    # https://gitlab.com/oauth/authorize?client_id=...&redirect_uri=...&response_type=code
    # &state=...&scope=REQUESTED_SCOPES (space-separated)&code_challenge=...
    # &code_challenge_method=S256.
    pytest.param(
        "gitlab",
        {},
        "https://gitlab.com/oauth/authorize"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&response_type=code&state=state-xyz&scope=api%20read_user"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="gitlab",
    ),
    # Dropbox, "OAuth Guide" (docs_url: https://developers.dropbox.com/oauth-guide) and the
    # /oauth2/authorize reference: https://www.dropbox.com/oauth2/authorize?client_id=...
    # &response_type=code&redirect_uri=...&state=...&token_access_type=offline (a refresh
    # token with the short-lived access token)&scope=a b (space-separated)
    # &code_challenge=...&code_challenge_method=S256.
    pytest.param(
        "dropbox",
        {},
        "https://www.dropbox.com/oauth2/authorize"
        "?client_id=client-123&response_type=code"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&state=state-xyz&token_access_type=offline"
        "&scope=account_info.read%20files.metadata.read%20files.content.read"
        "%20files.content.write"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="dropbox",
    ),
    # Box, "OAuth 2.0 auth" (docs_url: https://developer.box.com/guides/authentication/oauth2/)
    # and "Authorize user": https://account.box.com/api/oauth2/authorize?client_id=...
    # &redirect_uri=...&response_type=code&state=...&scope=root_readwrite (space-separated).
    pytest.param(
        "box",
        {},
        "https://account.box.com/api/oauth2/authorize"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&response_type=code&state=state-xyz&scope=root_readwrite",
        id="box",
    ),
    # Docusign, "Authorization Code Grant" (docs_url:
    # https://developers.docusign.com/platform/auth/authcode/), "Get the authorization code"
    # (with PKCE): https://account.docusign.com/oauth/auth?response_type=code
    # &scope=signature%20extended&client_id=...&state=...&redirect_uri=...
    # &code_challenge_method=S256&code_challenge=...
    pytest.param(
        "docusign",
        {"environment": "account.docusign.com"},
        "https://account.docusign.com/oauth/auth"
        "?response_type=code&scope=signature%20extended&client_id=client-123&state=state-xyz"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&code_challenge_method=S256&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0",
        id="docusign",
    ),
    # Same page: the developer (demo) environment signs in at account-d.docusign.com.
    pytest.param(
        "docusign",
        {"environment": "account-d.docusign.com"},
        "https://account-d.docusign.com/oauth/auth"
        "?response_type=code&scope=signature%20extended&client_id=client-123&state=state-xyz"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&code_challenge_method=S256&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0",
        id="docusign-demo",
    ),
    # Zoom, "OAuth for user authorized apps" (docs_url:
    # https://developers.zoom.us/docs/integrations/oauth/), step 1 "Request user
    # authorization": https://zoom.us/oauth/authorize?response_type=code&client_id=...
    # &redirect_uri=...&state=...&code_challenge=...&code_challenge_method=S256; no scope:
    # Zoom grants the scopes configured on the app in the Marketplace.
    pytest.param(
        "zoom",
        {},
        "https://zoom.us/oauth/authorize"
        "?response_type=code&client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="zoom",
    ),
    # Asana, "OAuth", "User authorization endpoint" (https://developers.asana.com/docs/oauth,
    # from the docs_url https://developers.asana.com/docs/authentication):
    # https://app.asana.com/-/oauth_authorize?client_id=...&redirect_uri=...
    # &response_type=code&state=...&code_challenge_method=S256&code_challenge=...
    # &scope=default (space-delimited; "default" is the full-permissions scope).
    pytest.param(
        "asana",
        {},
        "https://app.asana.com/-/oauth_authorize"
        "?client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&response_type=code&state=state-xyz"
        "&code_challenge_method=S256&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0"
        "&scope=default",
        id="asana",
    ),
    # Notion, "Authorization", public integration auth flow, step 1 (docs_url:
    # https://developers.notion.com/docs/authorization):
    # https://api.notion.com/v1/oauth/authorize?client_id=...&response_type=code&owner=user
    # &redirect_uri=...&state=...; no scopes (pages are chosen on Notion's consent screen)
    # and no PKCE.
    pytest.param(
        "notion",
        {},
        "https://api.notion.com/v1/oauth/authorize"
        "?client_id=client-123&response_type=code&owner=user"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F&state=state-xyz",
        id="notion",
    ),
    # The Sandbox (docs_url:
    # https://github.com/connections-portal/portal/blob/main/docs/connectors.md#the-sandbox-connector):
    # django-oauth-toolkit served by the portal itself at /sandbox/oauth/authorize/, a plain
    # RFC 6749 section 4.1.1 request (space-separated scope) with RFC 7636 PKCE (S256).
    pytest.param(
        "sandbox",
        {},
        "https://portal.example.com/sandbox/oauth/authorize/"
        "?response_type=code&client_id=client-123"
        "&redirect_uri=https%3A%2F%2Fportal.example.com%2Foauth%2Fcallback%2F"
        "&scope=profile%20records.read&state=state-xyz"
        "&code_challenge=ChptLSTayxjOFKYTbcN7U5l3IcYIETgZ7dGzLOUv_B0&code_challenge_method=S256",
        id="sandbox",
    ),
]

SECRET_WORDS = ("secret", "password", "token", "assertion", "key")
# Parameters whose names contain one of SECRET_WORDS but carry no secret.
NOT_SECRETS = {"token_access_type"}


@pytest.fixture(autouse=True)
def _portal(settings):
    """The Sandbox connector is in the catalog, and the portal has an https address."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = PORTAL


def shipped_authorization_code():
    catalog = load_catalog([BUILTIN_DEFINITIONS], include_sandbox=True)
    return [
        connector
        for connector in catalog.all()
        if connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    ]


def authorize_url(key: str, values: dict[str, str], **overrides) -> str:
    connector = get_catalog().get(key)
    assert connector is not None, f"{key} is not in the catalog"
    auth = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    assert auth is not None, f"{key} offers no authorization code grant"
    arguments = {
        "client_id": CLIENT_ID,
        "scopes": list(auth.oauth2.default_scopes),
        "state": STATE,
        "code_verifier": VERIFIER,
        "values": values,
        "redirect_to": REDIRECT_TO,
        **overrides,
    }
    return build_authorize_url(connector, auth, **arguments)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


def assert_same_url(actual: str, expected: str) -> None:
    got, want = urlsplit(actual), urlsplit(expected)
    assert (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path), actual
    assert not got.fragment, actual
    assert query(actual) == query(expected), actual


def test_code_challenge_is_s256_of_the_verifier():
    assert len(VERIFIER) == 64
    digest = hashlib.sha256(VERIFIER.encode("ascii")).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") == CHALLENGE


@pytest.mark.parametrize(("key", "values", "expected"), EXPECTED)
def test_authorize_url_is_the_one_the_provider_documents(key, values, expected):
    assert_same_url(authorize_url(key, values), expected)


def test_every_authorization_code_connector_has_an_expected_url():
    """A new OAuth connector needs its provider's authorize URL written in EXPECTED."""
    covered = {param.values[0] for param in EXPECTED}
    assert {c.key for c in shipped_authorization_code()} == covered


@pytest.mark.parametrize(
    "key", ["salesforce", "google_gmail", "microsoft_outlook", "slack", "jira", "notion"]
)
def test_byoa_scopes_use_the_connector_separator(key):
    """Scopes typed by a user (BYOA) go out in the same form as the defaults."""
    connector = get_catalog().get(key)
    oauth2 = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE).oauth2
    values = {"login_host": "login.salesforce.com", "tenant": "common"}
    url = authorize_url(key, values, scopes=["first.scope", "second:scope"])
    assert query(url)["scope"] == [f"first.scope{oauth2.scope_separator}second:scope"]


def sample_values(connector) -> dict[str, str]:
    """A value a user could give for every field of the authorization code auth type."""
    values = {}
    for field in connector.field_map(AuthKind.OAUTH2_AUTHORIZATION_CODE).values():
        if field.default:
            values[field.key] = field.default
        elif field.type == "choice":
            values[field.key] = field.choices[0][0]
        elif field.type == "subdomain":
            values[field.key] = "acme"
        elif field.type == "url":
            values[field.key] = "https://acme." + field.allowed_hosts[0].removeprefix("*.")
        elif field.type == "email":
            values[field.key] = "robot@example.com"
        else:
            values[field.key] = "acme"
    return values


@pytest.mark.parametrize("connector", shipped_authorization_code(), ids=lambda c: c.key)
def test_no_authorize_url_carries_a_secret_and_all_are_https(connector):
    auth = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    extra = {name.lower() for name in auth.oauth2.extra_authorize_params}
    assert not {
        name for name in extra - NOT_SECRETS if any(word in name for word in SECRET_WORDS)
    }, f"{connector.key}: extra_authorize_params name a secret: {sorted(extra)}"

    url = authorize_url(connector.key, sample_values(connector))
    parts = urlsplit(url)
    assert parts.scheme == "https", url
    assert parts.hostname and not parts.username and not parts.password, url
    assert not parts.fragment, url
    params = query(url)
    for name in set(params) - NOT_SECRETS:
        assert not any(word in name.lower() for word in SECRET_WORDS), (connector.key, name)
    assert "client_secret" not in params
    assert "code_verifier" not in params
    assert VERIFIER not in url, "the PKCE verifier travels only to the token endpoint"
    assert params["client_id"] == [CLIENT_ID]
    assert params["state"] == [STATE]
    assert params["redirect_uri"] == [REDIRECT_TO]
    if auth.oauth2.pkce:
        assert params["code_challenge"] == [CHALLENGE]
        assert params["code_challenge_method"] == ["S256"]
    else:
        assert "code_challenge" not in params


@pytest.mark.django_db
@pytest.mark.parametrize("connector", shipped_authorization_code(), ids=lambda c: c.key)
def test_the_client_secret_never_reaches_the_authorize_url(connector, rf):
    """Through the real start of a flow, with the portal's app and its secret."""
    from connections.oauth import start_authorization
    from connections.oauth_apps import ClientCredentials
    from tests.factories import FolderFactory, UserFactory

    secret = "client-secret-value-that-must-stay-home-7f3a"
    request = rf.get("/")
    request.user = UserFactory()
    request.session = {}
    auth = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)
    url = start_authorization(
        request,
        folder=FolderFactory(),
        connector=connector,
        name="Test",
        description="",
        fields=sample_values(connector),
        client=ClientCredentials(CLIENT_ID, secret),
        scopes=list(auth.oauth2.default_scopes),
    )
    assert secret not in url
    assert "client_secret" not in query(url)
    assert urlsplit(url).scheme == "https", url
