"""TOTP second factor through allauth's MFA pages: enrolment, then a login
that asks for the code. Codes are computed with a small RFC 6238
implementation, as an authenticator app would, not with allauth's own code."""

import base64
import hashlib
import hmac
import re
import struct
import time
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client

from tests.factories import PASSWORD, UserFactory

LOGIN_URL = "/accounts/login/"
ACTIVATE_URL = "/accounts/2fa/totp/activate/"
AUTHENTICATE_URL = "/accounts/2fa/authenticate/"
REAUTHENTICATE_URL = "/accounts/reauthenticate/"
PERIOD = 30


def totp(secret_b32: str, at: float | None = None, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1, 30 s steps), as authenticator apps compute it."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // PERIOD)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def current_code(secret: str) -> str:
    """A code that stays valid while the request is handled: never computed in
    the last two seconds of a 30-second step."""
    remaining = PERIOD - time.time() % PERIOD
    if remaining < 2:
        time.sleep(remaining + 0.05)
    return totp(secret)


def test_totp_implementation_matches_rfc_6238_vectors():
    # RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits.
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp(secret, at=59, digits=8) == "94287082"
    assert totp(secret, at=1111111109, digits=8) == "07081804"
    assert totp(secret, at=2000000000, digits=8) == "69279037"


def wrong_code(secret: str) -> str:
    right = totp(secret)
    return f"{(int(right) + 1) % 10**6:06d}"


def password_login(client: Client, username: str = "alice"):
    return client.post(LOGIN_URL, {"login": username, "password": PASSWORD})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def enrol(client: Client) -> str:
    """Activate TOTP through the pages; returns the secret."""
    # Adding a second factor asks for the password again, even right after login.
    response = client.get(ACTIVATE_URL)
    assert response.status_code == 302
    assert (
        response["Location"] == f"{REAUTHENTICATE_URL}?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F"
    )
    refused = client.post(response["Location"], {"password": "not-my-password-1"})
    assert refused.status_code == 200
    assert refused.context["form"].errors
    response = client.post(response["Location"], {"password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == ACTIVATE_URL

    page = client.get(ACTIVATE_URL)
    assert page.status_code == 200, page.get("Location")
    secret = page.context["form"].secret
    html = page.content.decode()
    # The page shows the secret for manual entry...
    assert f'value="{secret}"' in html
    # ...and the otpauth:// URL (behind the QR code) carries the same secret.
    url = urlparse(page.context["totp_url"])
    assert url.scheme == "otpauth"
    assert url.netloc == "totp"
    query = parse_qs(url.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Connections portal"]
    assert "alice" in unquote(url.path)
    # The QR code is an image from a data: URI, allowed by the CSP's img-src.
    assert 'src="data:image/svg+xml;base64,' in html
    csp = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data:" in csp
    assert "'unsafe-inline'" not in csp

    # A wrong code does not activate anything.
    response = client.post(ACTIVATE_URL, {"code": wrong_code(secret)})
    assert response.status_code == 200
    assert response.context["form"].errors["code"]
    assert not Authenticator.objects.filter(type=Authenticator.Type.TOTP).exists()

    response = client.post(ACTIVATE_URL, {"code": current_code(secret)})
    assert response.status_code == 302, response.content
    assert response["Location"] == "/accounts/2fa/recovery-codes/"
    return secret


@pytest.fixture
def alice(db):
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def enrolled(client, alice):
    assert password_login(client).status_code == 302
    secret = enrol(client)
    client.post("/accounts/logout/")
    assert not signed_in(client)
    return secret


def test_enrolment_stores_an_encrypted_authenticator(client, alice):
    assert password_login(client).status_code == 302
    secret = enrol(client)
    authenticator = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)
    assert authenticator.data["secret"]
    # Recovery codes were generated alongside.
    assert Authenticator.objects.filter(user=alice, type=Authenticator.Type.RECOVERY_CODES).exists()
    # The 2FA page now offers deactivation instead of activation.
    assert client.get(ACTIVATE_URL)["Location"] == "/accounts/2fa/totp/deactivate/"
    assert secret


def test_enrolment_requires_the_password_again(client, alice):
    client.force_login(alice)
    response = client.get(ACTIVATE_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(REAUTHENTICATE_URL)
    assert client.post(ACTIVATE_URL, {"code": "123456"})["Location"].startswith(REAUTHENTICATE_URL)
    assert not Authenticator.objects.exists()


def test_enrolment_requires_login(client, db):
    response = client.get(ACTIVATE_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)


def test_login_asks_for_the_code_and_accepts_a_right_one(client, alice, enrolled):
    response = password_login(client)
    assert response.status_code == 302
    assert response["Location"] == AUTHENTICATE_URL
    # The password alone signs nobody in.
    assert not signed_in(client)
    assert client.get("/")["Location"].startswith(LOGIN_URL)

    page = client.get(AUTHENTICATE_URL)
    assert page.status_code == 200
    assert "code" in page.context["form"].fields

    response = client.post(AUTHENTICATE_URL, {"code": current_code(enrolled)})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in(client)
    assert client.session["_auth_user_id"] == str(alice.pk)
    assert client.get("/", follow=True).status_code == 200


def test_login_refuses_a_wrong_code(client, alice, enrolled):
    password_login(client)
    for code in (wrong_code(enrolled), "", "abcdef", "1234567"):
        response = client.post(AUTHENTICATE_URL, {"code": code})
        assert response.status_code == 200
        assert response.context["form"].errors
        assert not signed_in(client)
    # A code from another secret is wrong too.
    other = base64.b32encode(b"another-secret-12345").decode()
    response = client.post(AUTHENTICATE_URL, {"code": totp(other)})
    assert not signed_in(client) or totp(other) == totp(enrolled)
    # Then the right code still works.
    client.post(AUTHENTICATE_URL, {"code": current_code(enrolled)})
    assert signed_in(client)


def test_a_used_code_cannot_be_replayed(client, alice, enrolled):
    password_login(client)
    code = current_code(enrolled)
    client.post(AUTHENTICATE_URL, {"code": code})
    assert signed_in(client)

    attacker = Client()
    password_login(attacker)
    response = attacker.post(AUTHENTICATE_URL, {"code": code})
    assert response.status_code == 200
    assert not signed_in(attacker)


def test_code_guessing_is_throttled(client, alice, enrolled):
    """Someone who has the password cannot try codes without end: after a few
    wrong codes even the right one is refused for a while."""
    password_login(client)
    for _ in range(5):
        client.post(AUTHENTICATE_URL, {"code": wrong_code(enrolled)})
    response = client.post(AUTHENTICATE_URL, {"code": current_code(enrolled)})
    assert not signed_in(client)
    errors = " ".join(response.context["form"].errors.get("code", []))
    assert re.search(r"too many|try again later", errors, re.IGNORECASE), errors

    # Starting over from another address does not reset the count (it is per account).
    other = Client()
    other.post(LOGIN_URL, {"login": "alice", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9")
    other.post(AUTHENTICATE_URL, {"code": current_code(enrolled)}, REMOTE_ADDR="198.51.100.9")
    assert not signed_in(other)


def test_password_failures_are_still_counted_by_axes_per_address(client, alice, settings):
    """The second-factor throttle does not bring back a per-account password
    lockout that anyone could trigger from anywhere: the password lockout stays
    per (account, address)."""
    settings.AXES_FAILURE_LIMIT = 5
    for _ in range(8):
        client.post(LOGIN_URL, {"login": "alice", "password": "wrong-password-1"})
    elsewhere = Client()
    response = elsewhere.post(
        LOGIN_URL, {"login": "alice", "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
    )
    assert response.status_code == 302
    assert signed_in(elsewhere)


def test_admin_login_does_not_bypass_the_second_factor(client, db):
    """A staff user with TOTP must not get into the Django admin with the
    password alone through /admin/login/ (Django's own login form knows
    nothing of allauth's second factor)."""
    UserFactory(username="alice", email="alice@example.com", is_staff=True, is_superuser=True)
    assert password_login(client).status_code == 302
    enrol(client)
    client.post("/accounts/logout/")

    admin_client = Client()
    response = admin_client.post(
        "/admin/login/?next=/admin/", {"username": "alice", "password": PASSWORD}
    )
    assert not signed_in(admin_client), "signed in to the admin without the second factor"
    assert admin_client.get("/admin/").status_code == 302
    # The admin sends people to the portal's sign-in, which asks for the code.
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)
