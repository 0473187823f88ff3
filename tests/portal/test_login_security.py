"""Login security: throttling by (account, client address), session rotation,
no open redirect through ``next=``, and the security headers on every page.

Everything goes through Django's test client, the way a browser (or an
attacker with curl) would talk to the portal.
"""

import re

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from portal.auth.lockout import attempted_login
from portal.client_ip import client_ip
from portal.models import Folder, Invitation
from tests.factories import PASSWORD, UserFactory, assign

LOGIN_URL = "/accounts/login/"
WRONG = "not-the-password-1"

ATTACKER = "203.0.113.66"
VICTIM_NEIGHBOUR = "198.51.100.20"
PROXY = "10.0.0.2"


def login(client, login_name, password, *, remote=ATTACKER, xff=None, **extra):
    headers = {"REMOTE_ADDR": remote}
    if xff is not None:
        headers["HTTP_X_FORWARDED_FOR"] = xff
    return client.post(LOGIN_URL, {"login": login_name, "password": password, **extra}, **headers)


def is_logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def locked(response) -> bool:
    return response.status_code == 429 and b"Too many failed sign-in attempts" in response.content


@pytest.fixture
def alice(db):
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 5
    return 5


# --- client_ip: unit tests ---------------------------------------------------


def _request(remote="192.0.2.1", xff=None):
    meta = {"REMOTE_ADDR": remote}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    return RequestFactory().get("/", **meta)


@pytest.mark.parametrize(
    "xff",
    [None, "", "198.51.100.1", "198.51.100.1, 198.51.100.2", "garbage", "::1"],
)
def test_client_ip_without_trusted_proxy_ignores_forwarded_for(settings, xff):
    settings.PORTAL_TRUSTED_PROXY_COUNT = 0
    assert client_ip(_request("192.0.2.1", xff)) == "192.0.2.1"


@pytest.mark.parametrize(
    ("proxies", "xff", "expected"),
    [
        # One proxy: the last entry, the one the proxy appended.
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "1.1.1.1, 198.51.100.7", "198.51.100.7"),
        (1, "1.1.1.1,2.2.2.2,   198.51.100.7  ", "198.51.100.7"),
        # Two proxies: the second from the right; the client's own entries are ignored.
        (2, "1.1.1.1, 198.51.100.7, 10.0.0.9", "198.51.100.7"),
        (2, "198.51.100.7, 10.0.0.9", "198.51.100.7"),
        # Empty entries a client slips in do not shift the count.
        (1, "1.1.1.1,, ,198.51.100.7", "198.51.100.7"),
        # IPv6, normalised; ports some proxies append are dropped.
        (1, "2001:DB8:0:0::1", "2001:db8::1"),
        (1, "198.51.100.7:51234", "198.51.100.7"),
        (1, "[2001:db8::1]:443", "2001:db8::1"),
        (1, "[2001:db8::1]", "2001:db8::1"),
    ],
)
def test_client_ip_with_trusted_proxies(settings, proxies, xff, expected):
    settings.PORTAL_TRUSTED_PROXY_COUNT = proxies
    assert client_ip(_request(PROXY, xff)) == expected


@pytest.mark.parametrize(
    ("proxies", "xff"),
    [
        (1, None),  # the proxy was bypassed or sends no header
        (1, ""),
        (1, " , "),
        (2, "198.51.100.7"),  # shorter chain than the proxies we were told of
        (1, "1.1.1.1, not-an-address"),  # the proxy wrote garbage
        (1, "1.1.1.1, 198.51.100.7:port"),
        (1, "[2001:db8::1"),
        (1, "[2001:db8::1]x"),
        (1, "1.1.1.1, unknown"),
    ],
)
def test_client_ip_falls_back_to_the_peer_when_the_chain_is_not_usable(settings, proxies, xff):
    settings.PORTAL_TRUSTED_PROXY_COUNT = proxies
    assert client_ip(_request(PROXY, xff)) == PROXY


def test_allauth_uses_the_same_client_address(settings):
    from allauth.account.adapter import get_adapter

    settings.PORTAL_TRUSTED_PROXY_COUNT = 1
    request = _request(PROXY, "1.1.1.1, 198.51.100.7")
    assert get_adapter(request).get_client_ip(request) == "198.51.100.7"


# --- what a failure is counted against ---------------------------------------


def test_failures_are_counted_per_account_whatever_the_spelling(alice):
    request = RequestFactory().post(LOGIN_URL)
    assert attempted_login(request, {"username": "Alice "}) == "alice"
    # allauth passes an e-mail login as both email and username.
    by_email = {"email": "ALICE@example.com", "username": "ALICE@example.com"}
    assert attempted_login(request, by_email) == "alice"
    assert attempted_login(request, {"username": "nobody@example.com"}) == "nobody@example.com"
    assert attempted_login(request, {}) is None


def test_username_and_email_share_one_failure_count(client, alice, limit):
    for attempt in range(limit):
        name = "alice" if attempt % 2 else "ALICE@example.com"
        login(client, name, WRONG)
    response = login(client, "alice@example.com", PASSWORD)
    assert locked(response)
    response = login(client, "alice", PASSWORD)
    assert locked(response)
    assert not is_logged_in(client)


# --- lockout, no trusted proxy -------------------------------------------------


def test_lockout_after_repeated_failures_and_right_password_refused(client, alice, limit, settings):
    settings.PORTAL_TRUSTED_PROXY_COUNT = 0
    for _ in range(limit - 1):
        response = login(client, "alice", WRONG)
        assert response.status_code == 200
        assert not locked(response)
    assert locked(login(client, "alice", WRONG))

    # Locked out: even the right password does not sign in.
    response = login(client, "alice", PASSWORD)
    assert locked(response)
    assert not is_logged_in(client)
    assert client.get("/").status_code == 302  # still anonymous


def test_spoofed_forwarded_for_neither_resets_nor_shifts_lockout_without_proxy(
    client, alice, limit, settings
):
    settings.PORTAL_TRUSTED_PROXY_COUNT = 0
    # Every attempt claims to come from somewhere else.
    for attempt in range(limit):
        login(client, "alice", WRONG, xff=f"192.0.2.{attempt + 1}")

    # The failures were all counted against the TCP peer, not the claimed addresses.
    attempts = list(AccessAttempt.objects.values_list("username", "ip_address"))
    assert attempts == [("alice", ATTACKER)]

    # A fresh spoofed address, or one of the previously claimed ones, does not help.
    for xff in ("192.0.2.200", "192.0.2.1", VICTIM_NEIGHBOUR, ""):
        response = login(client, "alice", PASSWORD, xff=xff)
        assert locked(response), xff
        assert not is_logged_in(client)

    # The addresses the attacker claimed are not locked: the real owner of one
    # of them (a different TCP peer) signs in.
    other = client.__class__()
    response = login(other, "alice", PASSWORD, remote="192.0.2.1")
    assert response.status_code == 302
    assert is_logged_in(other)

    # And that success does not unlock the attacker.
    assert locked(login(client, "alice", PASSWORD))


# --- lockout, one trusted proxy ----------------------------------------------


def test_behind_one_proxy_the_real_client_is_locked_out(client, alice, limit, settings):
    settings.PORTAL_TRUSTED_PROXY_COUNT = 1
    # The proxy appends the address it saw; REMOTE_ADDR is always the proxy.
    for attempt in range(limit):
        # The attacker prepends a different made-up address each time.
        response = login(
            client, "alice", WRONG, remote=PROXY, xff=f"192.0.2.{attempt + 1}, {ATTACKER}"
        )
    assert locked(response)
    assert list(AccessAttempt.objects.values_list("username", "ip_address")) == [
        ("alice", ATTACKER)
    ]

    # Prepending spoofed entries (even the neighbour's address) does not change who is locked.
    for xff in (
        ATTACKER,
        f"{VICTIM_NEIGHBOUR}, {ATTACKER}",
        f"192.0.2.99, 192.0.2.98, {ATTACKER}",
    ):
        response = login(client, "alice", PASSWORD, remote=PROXY, xff=xff)
        assert locked(response), xff
        assert not is_logged_in(client)

    # Another client behind the same proxy is not locked out.
    neighbour = client.__class__()
    response = login(neighbour, "alice", PASSWORD, remote=PROXY, xff=VICTIM_NEIGHBOUR)
    assert response.status_code == 302
    assert is_logged_in(neighbour)

    # The proxy itself was never blamed, and the attacker stays locked.
    assert not AccessAttempt.objects.filter(ip_address=PROXY).exists()
    assert locked(login(client, "alice", PASSWORD, remote=PROXY, xff=ATTACKER))


def test_behind_one_proxy_a_client_claiming_the_locked_address_is_not_locked(
    client, alice, limit, settings
):
    """The neighbour's request with the attacker's address prepended (forged
    by the neighbour's browser, say) is still the neighbour's."""
    settings.PORTAL_TRUSTED_PROXY_COUNT = 1
    for _ in range(limit):
        login(client, "alice", WRONG, remote=PROXY, xff=ATTACKER)
    neighbour = client.__class__()
    response = login(
        neighbour, "alice", PASSWORD, remote=PROXY, xff=f"{ATTACKER}, {VICTIM_NEIGHBOUR}"
    )
    assert response.status_code == 302
    assert is_logged_in(neighbour)


def test_lockout_is_per_account(client, alice, limit):
    UserFactory(username="bob")
    for _ in range(limit):
        login(client, "alice", WRONG)
    response = login(client, "bob", PASSWORD)
    assert response.status_code == 302
    assert is_logged_in(client)


def test_success_before_the_limit_resets_the_count(client, alice, limit):
    for _ in range(limit - 1):
        login(client, "alice", WRONG)
    assert login(client, "alice", PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    for _ in range(limit - 1):
        assert not locked(login(client, "alice", WRONG))


# --- session fixation ----------------------------------------------------------


def test_session_key_rotated_on_login(client, alice):
    # A session exists before login (as if planted by an attacker or left by browsing).
    session = client.session
    session["before_login"] = "kept"
    session.save()
    before = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert before == session.session_key

    response = login(client, "alice", PASSWORD)
    assert response.status_code == 302

    after = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert client.session["_auth_user_id"] == str(alice.pk)
    # The pre-login key no longer opens anything.
    assert not SessionStore().exists(before)
    assert SessionStore(session_key=before).load() == {}


def test_session_key_rotated_on_logout(client, alice):
    assert login(client, "alice", PASSWORD).status_code == 302
    before = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    client.post("/accounts/logout/")
    assert not SessionStore().exists(before)
    assert "_auth_user_id" not in client.session


# --- open redirects ----------------------------------------------------------

EVIL_NEXTS = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https:evil.example",
    "http://testserver@evil.example/",
    " https://evil.example/",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("next_url", EVIL_NEXTS)
def test_login_next_cannot_leave_the_site(client, alice, next_url):
    assert client.get(LOGIN_URL, {"next": next_url}).status_code == 200
    response = login(client, "alice", PASSWORD, next=next_url)
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("next_url", EVIL_NEXTS)
def test_next_in_query_string_on_post_cannot_leave_the_site(client, alice, next_url):
    response = client.post(
        f"{LOGIN_URL}?next={next_url}",
        {"login": "alice", "password": PASSWORD},
        REMOTE_ADDR=ATTACKER,
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_login_next_to_a_local_page_is_followed(client, alice):
    response = login(client, "alice", PASSWORD, next="/tenant/")
    assert response["Location"] == "/tenant/"


@pytest.mark.parametrize("next_url", EVIL_NEXTS)
def test_logout_next_cannot_leave_the_site(client, alice, next_url):
    client.force_login(alice)
    response = client.post("/accounts/logout/", {"next": next_url})
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]
    assert not response["Location"].startswith(("//", "javascript:", "http"))


def test_login_required_redirect_keeps_a_local_next(client):
    response = client.get("/tenant/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/tenant/"


# --- security headers on every page -------------------------------------------


def assert_security_headers(response, where: str) -> None:
    csp = response.headers.get("Content-Security-Policy")
    assert csp, f"{where}: no Content-Security-Policy"
    assert "Content-Security-Policy-Report-Only" not in response.headers, where
    directives = {}
    for part in csp.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value.split()
    assert "'unsafe-inline'" not in csp, where
    assert "'unsafe-eval'" not in csp, where
    assert "'unsafe-hashes'" not in csp, where
    assert "*" not in csp.split(), where
    assert directives.get("object-src") == ["'none'"], where
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert directives.get("base-uri") == ["'none'"], where
    assert directives.get("default-src") == ["'self'"], where
    assert "script-src" in directives, where
    for source in directives["script-src"]:
        assert source == "'self'" or source.startswith("'nonce-"), (where, source)
    assert response.headers.get("X-Frame-Options") == "DENY", where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where
    assert response.headers.get("Referrer-Policy") == "same-origin", where
    assert response.headers.get("Cross-Origin-Opener-Policy") == "same-origin", where


def test_inline_scripts_carry_the_response_nonce(client, alice):
    """If a page has an inline script, it must carry the nonce the header names."""
    client.force_login(alice)
    for url in ("/", LOGIN_URL, "/accounts/2fa/"):
        response = client.get(url, follow=True)
        body = response.content.decode()
        csp = response.headers["Content-Security-Policy"]
        nonces = set(re.findall(r"'nonce-([^']+)'", csp))
        for tag in re.findall(r"<script\b[^>]*>", body):
            if "src=" in tag:
                continue
            match = re.search(r'nonce="([^"]+)"', tag)
            assert match and match.group(1) in nonces, (url, tag)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", body), url  # no inline handlers
        assert not re.search(r"<[^>]+\sstyle\s*=", body), url  # no inline styles


def test_every_page_sends_security_headers(client, alice, settings, tree):
    settings.PORTAL_OPEN_SIGNUP = False
    anonymous_pages = {
        "login": LOGIN_URL,
        "signup refused": "/accounts/signup/",
        "password reset": "/accounts/password/reset/",
        "password reset done": "/accounts/password/reset/done/",
        "admin login": "/admin/login/",
        "invalid invitation": "/invitations/not-a-token/",
        "not found": "/no-such-page/",
    }
    for where, url in anonymous_pages.items():
        response = client.get(url)
        # (The admin's login may hand over to the portal's, which asks for the second factor.)
        assert response.status_code in (200, 302, 404), where
        assert_security_headers(response, where)

    # A failed login, a lockout page and a redirect carry them too.
    assert_security_headers(login(client, "alice", WRONG), "failed login")
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert_security_headers(response, "login redirect")

    assign(alice, tree["finance"], "Viewer")
    pages = {
        "home": "/",
        "folder": f"/folders/{tree['finance'].pk}/connections/",
        "subfolders": f"/folders/{tree['finance'].pk}/subfolders/",
        "two-factor": "/accounts/2fa/",
        "password change": "/accounts/password/change/",
        "forbidden tenant page": "/tenant/",
        "invisible folder": f"/folders/{tree['other'].pk}/connections/",
    }
    for where, url in pages.items():
        response = client.get(url, follow=True)
        assert response.status_code in (200, 403, 404), where
        assert_security_headers(response, where)

    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    Invitation.issue(email="new@example.com", invited_by=admin)
    workspace = Folder.objects.get(owner=UserFactory(username="carol"))
    tenant_pages = {
        "governance": "/tenant/",
        "tenant folders": "/tenant/folders/",
        "invitations": "/tenant/invitations/",
        "workspaces": "/tenant/workspaces/",
        "folder access": f"/folders/{tree['shared'].pk}/access/",
        "admin index": "/admin/",
        "admin users": "/admin/auth/user/",
        "someone's workspace": f"/folders/{workspace.pk}/connections/",
    }
    for where, url in tenant_pages.items():
        response = client.get(url)
        assert response.status_code in (200, 404), where
        assert_security_headers(response, where)


def test_lockout_page_sends_security_headers(client, alice, limit):
    for _ in range(limit):
        response = login(client, "alice", WRONG)
    assert locked(response)
    assert_security_headers(response, "lockout")


def test_security_headers_on_htmx_partials(client, alice, tree):
    assign(alice, tree["finance"], "Viewer")
    client.force_login(alice)
    response = client.get(
        f"/folders/{tree['finance'].pk}/connections/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="connection-table",
    )
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert_security_headers(response, "htmx partial")
