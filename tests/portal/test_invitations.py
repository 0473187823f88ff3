"""Sign-up is by invitation: open sign-up is refused unless a setting allows
it, an administrator's invitation link leads to sign-up with the invited
address, once, and only the token's digest is stored."""

import hashlib
import re
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.utils import timezone

from portal.auth.adapter import PortalAccountAdapter
from portal.models import Folder, Invitation
from tests.factories import UserFactory

User = get_user_model()

SIGNUP_URL = "/accounts/signup/"
INVITE_URL = "/tenant/invitations/"
NEW_PASSWORD = "a-long-new-password-42"
LINK = re.compile(r"http://testserver(/invitations/([^/\s]+)/)")


@pytest.fixture
def admin_client(client, tenant_admin):
    client.force_login(tenant_admin)
    return client


def signup_data(email, username="newbie"):
    return {
        "email": email,
        "username": username,
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
    }


def invite(admin_client, email="new.person@example.com") -> tuple[str, str]:
    """Send an invitation through the page; returns (link path, token) from the e-mail."""
    before = len(mail.outbox)
    response = admin_client.post(INVITE_URL, {"email": email})
    assert response.status_code == 302, response.content
    assert response["Location"] == INVITE_URL
    assert len(mail.outbox) == before + 1
    message = mail.outbox[-1]
    assert message.to == [email]
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1), match.group(2)


def user_count() -> int:
    return User.objects.exclude(username="AnonymousUser").count()


def assert_signup_closed(response):
    assert response.status_code == 200
    assert response.templates[0].name == "account/signup_closed.html"
    assert b"Sign Up Closed" in response.content or b"sign up is closed" in response.content.lower()


# --- open sign-up ------------------------------------------------------------


def test_open_signup_is_refused_by_default(client, db, settings):
    assert settings.PORTAL_OPEN_SIGNUP is False
    assert_signup_closed(client.get(SIGNUP_URL))
    count = user_count()
    response = client.post(SIGNUP_URL, signup_data("walk.in@example.com"))
    assert_signup_closed(response)
    assert user_count() == count
    assert not User.objects.filter(email="walk.in@example.com").exists()
    assert mail.outbox == []


def test_login_page_does_not_offer_signup_when_closed(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'href="/accounts/signup/' not in response.content
    assert b"Accounts are created by invitation" in response.content


def test_login_page_offers_signup_when_open(client, db, settings):
    settings.PORTAL_OPEN_SIGNUP = True
    response = client.get("/accounts/login/")
    assert b'href="/accounts/signup/' in response.content


def test_login_page_offers_signup_to_an_invited_visitor(admin_client, db):
    path, _ = invite(admin_client)
    invitee = admin_client.__class__()
    invitee.get(path)
    assert b'href="/accounts/signup/' in invitee.get("/accounts/login/").content


def test_open_signup_works_when_allowed(client, db, settings):
    settings.PORTAL_OPEN_SIGNUP = True
    response = client.get(SIGNUP_URL)
    assert response.status_code == 200
    assert "form" in response.context
    response = client.post(SIGNUP_URL, signup_data("walk.in@example.com", "walkin"))
    assert response.status_code == 302, response.content
    user = User.objects.get(username="walkin")
    assert user.email == "walk.in@example.com"
    assert Folder.objects.filter(owner=user, kind=Folder.Kind.PERSONAL).count() == 1
    # The address is not proven: allauth asks for confirmation.
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mail.outbox) == 1


# --- invitations -------------------------------------------------------------


def test_invitation_signup_end_to_end(admin_client, client, tenant_admin):
    email = "new.person@example.com"
    path, _ = invite(admin_client, email)
    assert tenant_admin.get_full_name() in mail.outbox[0].body

    invitation = Invitation.objects.get()
    assert invitation.email == email
    assert invitation.invited_by == tenant_admin
    assert invitation.status == "Pending"

    # The admin's page lists it as pending.
    page = admin_client.get(INVITE_URL)
    assert email in page.content.decode()

    # The invitee, in their own browser.
    admin_client.logout()
    invitee = client.__class__()
    response = invitee.get(path)
    assert response.status_code == 302
    assert response["Location"] == SIGNUP_URL

    form_page = invitee.get(SIGNUP_URL)
    assert form_page.status_code == 200
    assert form_page.context["form"]["email"].value() == email

    count = user_count()
    response = invitee.post(SIGNUP_URL, signup_data(email))
    assert response.status_code == 302, response.content
    assert user_count() == count + 1

    user = User.objects.get(username="newbie")
    assert user.email == email
    assert user.check_password(NEW_PASSWORD)
    assert not user.is_staff
    assert not user.is_superuser
    # Exactly one personal workspace.
    assert Folder.objects.filter(owner=user).count() == 1
    assert Folder.objects.get(owner=user).kind == Folder.Kind.PERSONAL
    # The link proved the address: it is verified, no confirmation mail is sent.
    assert EmailAddress.objects.get(user=user, email=email).verified
    assert len(mail.outbox) == 1

    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    assert invitation.accepted_by == user
    assert invitation.status == "Accepted"

    # Signed in straight away, and the session no longer carries the invitation.
    assert invitee.session["_auth_user_id"] == str(user.pk)
    assert "portal_invitation_id" not in invitee.session
    assert invitee.get("/", follow=True).status_code == 200

    # The link cannot be used again, by anyone.
    invitee.post("/accounts/logout/")
    for browser in (invitee, client.__class__()):
        response = browser.get(path)
        assert response.status_code == 404
        assert b"This invitation link is not valid" in response.content
        assert_signup_closed(browser.get(SIGNUP_URL))


def test_second_browser_cannot_reuse_an_opened_link(admin_client, db):
    path, _ = invite(admin_client)
    admin_client.logout()
    first, second = admin_client.__class__(), admin_client.__class__()
    first.get(path)
    second.get(path)  # opened before the first finished signing up
    assert first.post(SIGNUP_URL, signup_data("new.person@example.com")).status_code == 302

    count = user_count()
    response = second.post(SIGNUP_URL, signup_data("new.person@example.com", "someone"))
    assert_signup_closed(response)
    assert user_count() == count


def test_invitation_taken_while_signing_up_creates_no_second_account(admin_client, monkeypatch, db):
    """Two sign-ups racing through one link: the other browser claims the
    invitation after this one passed its checks and before it saves. This one
    is refused and rolled back, user and personal workspace included."""
    path, _ = invite(admin_client)
    admin_client.logout()
    late = admin_client.__class__()
    late.get(path)
    invitation = Invitation.objects.get()

    original_save_user = PortalAccountAdapter.save_user
    winner = UserFactory(username="winner")

    def winner_first(self, request, user, form, commit=True):
        Invitation.objects.filter(pk=invitation.pk).update(
            accepted_at=timezone.now(), accepted_by=winner
        )
        return original_save_user(self, request, user, form, commit=commit)

    monkeypatch.setattr(PortalAccountAdapter, "save_user", winner_first)
    folders = Folder.objects.count()
    response = late.post(SIGNUP_URL, signup_data("new.person@example.com", "loser"))
    assert response.status_code == 403
    assert not User.objects.filter(username="loser").exists()
    assert not User.objects.filter(email="new.person@example.com").exists()
    assert Folder.objects.count() == folders  # no workspace for the refused sign-up
    invitation.refresh_from_db()
    assert invitation.accepted_by.username == "winner"


def test_signup_with_a_different_email_is_refused(admin_client, db):
    path, _ = invite(admin_client, "invited@example.com")
    admin_client.logout()
    invitee = admin_client.__class__()
    invitee.get(path)
    count = user_count()
    response = invitee.post(SIGNUP_URL, signup_data("someone.else@example.com"))
    assert response.status_code == 200
    assert response.context["form"].errors["email"] == [
        "This invitation is for invited@example.com; sign up with that address."
    ]
    assert "This invitation is for invited@example.com" in response.content.decode()
    assert user_count() == count
    assert Invitation.objects.get().status == "Pending"

    # The same browser can still finish with the right address (any letter case).
    response = invitee.post(SIGNUP_URL, signup_data("Invited@Example.com"))
    assert response.status_code == 302
    assert User.objects.get(username="newbie").email.casefold() == "invited@example.com"


def test_expired_invitation_shows_the_invalid_page(admin_client, db):
    path, _ = invite(admin_client)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    admin_client.logout()
    response = admin_client.get(path)
    assert response.status_code == 404
    assert b"This invitation link is not valid" in response.content
    assert "portal_invitation_id" not in admin_client.session
    assert_signup_closed(admin_client.get(SIGNUP_URL))


def test_revoked_invitation_shows_the_invalid_page(admin_client, db):
    path, _ = invite(admin_client)
    invitation = Invitation.objects.get()
    response = admin_client.post(f"/tenant/invitations/{invitation.pk}/revoke/")
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.status == "Revoked"
    admin_client.logout()
    response = admin_client.get(path)
    assert response.status_code == 404
    assert b"This invitation link is not valid" in response.content


def test_revoked_after_opening_closes_signup(admin_client, db):
    path, _ = invite(admin_client)
    invitee = admin_client.__class__()
    invitee.get(path)
    Invitation.objects.update(revoked_at=timezone.now())
    count = user_count()
    assert_signup_closed(invitee.post(SIGNUP_URL, signup_data("new.person@example.com")))
    assert user_count() == count


def test_expired_after_opening_closes_signup(admin_client, db):
    path, _ = invite(admin_client)
    invitee = admin_client.__class__()
    invitee.get(path)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    count = user_count()
    assert_signup_closed(invitee.post(SIGNUP_URL, signup_data("new.person@example.com")))
    assert user_count() == count


@pytest.mark.parametrize("token", ["not-a-token", "x" * 43, "%00", "..%2F..%2Fadmin"])
def test_unknown_token_shows_the_invalid_page(client, db, token):
    response = client.get(f"/invitations/{token}/")
    assert response.status_code == 404
    assert "portal_invitation_id" not in client.session


def test_invitation_page_only_answers_get(admin_client, client, db):
    path, _ = invite(admin_client)
    assert client.post(path).status_code == 405


def test_signed_in_user_opening_a_link_does_not_consume_it(admin_client, make_user, db):
    path, _ = invite(admin_client)
    someone = make_user("someone")
    admin_client.force_login(someone)
    response = admin_client.get(path)
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert Invitation.objects.get().status == "Pending"


def test_only_the_token_digest_is_stored(admin_client, db):
    _, token = invite(admin_client)
    invitation = Invitation.objects.get()
    assert invitation.token_digest == hashlib.sha256(token.encode()).hexdigest()
    assert len(token) >= 32
    # The plain token appears in no column of the invitation table.
    for row in Invitation.objects.values():
        for value in row.values():
            assert token not in str(value)
    assert not Invitation.objects.filter(token_digest=token).exists()
    # ...nor on the admin's page.
    assert token not in admin_client.get(INVITE_URL).content.decode()


def test_invitation_form_rejects_bad_and_duplicate_addresses(admin_client, make_user, db):
    make_user("existing", email="existing@example.com")
    for email, message in [
        ("not-an-address", "Enter a valid email address."),
        ("EXISTING@example.com", "already has an account"),
    ]:
        response = admin_client.post(INVITE_URL, {"email": email})
        assert response.status_code == 400
        assert message in response.content.decode()
    invite(admin_client, "twice@example.com")
    response = admin_client.post(INVITE_URL, {"email": "twice@example.com"})
    assert response.status_code == 400
    assert "already has a pending invitation" in response.content.decode()
    assert Invitation.objects.count() == 1
    assert len(mail.outbox) == 1


def test_non_admins_cannot_send_or_revoke_invitations(client, make_user, tenant_admin):
    user = make_user("regular")
    invitation, _ = Invitation.issue(email="x@example.com", invited_by=tenant_admin)
    client.force_login(user)
    assert client.get(INVITE_URL).status_code == 403
    assert client.post(INVITE_URL, {"email": "friend@example.com"}).status_code == 403
    assert client.post(f"/tenant/invitations/{invitation.pk}/revoke/").status_code == 403
    assert Invitation.objects.count() == 1
    assert Invitation.objects.get().status == "Pending"
    assert mail.outbox == []


def test_anonymous_cannot_send_invitations(client, db):
    response = client.post(INVITE_URL, {"email": "friend@example.com"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not Invitation.objects.exists()


def test_a_tenant_administrator_who_is_not_superuser_may_invite(client, make_user, db):
    user = make_user("delegate")
    app_label, codename = ["portal", "administer_tenant"]
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    client.force_login(user)
    invite(client, "via.delegate@example.com")


def test_signup_next_cannot_leave_the_site(admin_client, db):
    path, _ = invite(admin_client)
    invitee = admin_client.__class__()
    invitee.get(path)
    response = invitee.post(
        SIGNUP_URL, {**signup_data("new.person@example.com"), "next": "https://evil.example/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_invitation_link_uses_the_configured_base_url_not_the_host_header(
    client, tenant_admin, settings
):
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    client.force_login(tenant_admin)
    response = client.post(INVITE_URL, {"email": "new.person@example.com"}, HTTP_HOST="localhost")
    assert response.status_code == 302
    body = mail.outbox[0].body
    assert "https://portal.example.com/invitations/" in body
    assert "localhost" not in body
