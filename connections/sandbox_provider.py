"""The Sandbox OAuth 2.0 authorization server (django-oauth-toolkit), for
`make run` and the test suite: a real, standards-following server that the
Sandbox connector's OAuth flows talk to over HTTP."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator

from connections.oauth_apps import set_portal_app, stored_portal_app

SANDBOX_CLIENT_ID = "connections-portal-sandbox"


class SandboxValidator(OAuth2Validator):
    """One registered app may use the authorization code, password, client
    credentials and refresh grants, as the providers' apps do (DOT binds an
    app to one)."""

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        Application = get_application_model()
        if (
            grant_type in {"password", "client_credentials"}
            and client.authorization_grant_type == Application.GRANT_AUTHORIZATION_CODE
        ):
            return True
        return super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)


def callback_url() -> str:
    return settings.PORTAL_BASE_URL + reverse("oauth_callback")


@transaction.atomic
def register_application(
    *, name: str, client_id: str, client_secret: str, redirect_uris: str, user=None
):
    """Create or update an app on the sandbox server (the secret kept plain,
    not hashed: the sandbox is for development and tests)."""
    Application = get_application_model()
    app, _ = Application.objects.update_or_create(
        client_id=client_id,
        defaults={
            "name": name,
            "user": user,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "client_secret": client_secret,
            "hash_client_secret": False,
            "redirect_uris": redirect_uris,
            "skip_authorization": False,
            "algorithm": "",
        },
    )
    return app


def ensure_portal_app() -> None:
    """Register the portal's own app for the Sandbox connector on the sandbox
    server and in the portal, once; keep its redirect URI current."""
    existing = stored_portal_app("sandbox")
    secret = existing.client_secret if existing else secrets.token_urlsafe(32)
    register_application(
        name="Connections portal",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=secret,
        redirect_uris=callback_url(),
    )
    if existing is None:
        set_portal_app("sandbox", client_id=SANDBOX_CLIENT_ID, client_secret=secret)


# --- Apps people register on the Sandbox (the "Sandbox apps" page) ---------

APP_NAME_MAX_LENGTH = 80
APPS_PER_USER = 10
APP_NAME_REQUIRED = "Give the app a name."
APP_NAME_TOO_LONG = f"The name is longer than {APP_NAME_MAX_LENGTH} characters."
APP_LIMIT_REACHED = (
    f"You already have {APPS_PER_USER} Sandbox apps, the most one person may have: "
    "delete one you no longer use to register another."
)


class AppRegistrationError(ValueError):
    """Why an app was not registered, in words for the person who asked."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class RegisteredApp:
    """A new app and its client secret in plain text: the only moment it
    exists outside the person's clipboard (the database keeps a hash)."""

    application: object
    client_secret: str = field(repr=False)


def user_apps(user):
    """The Sandbox apps ``user`` registered, newest first."""
    return get_application_model().objects.filter(user=user).order_by("-created", "-pk")


def delete_user_app(app) -> None:
    """Delete one of a user's Sandbox apps; its tokens and grants go with it."""
    app.delete()


def clean_app_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise AppRegistrationError(APP_NAME_REQUIRED, field="name")
    if len(name) > APP_NAME_MAX_LENGTH:
        raise AppRegistrationError(APP_NAME_TOO_LONG, field="name")
    return name


def _hold_owner(user) -> None:
    """Lock the user's row until the transaction ends, so that two
    registrations at once count the apps one after the other and cannot both
    pass the cap (a row lock on PostgreSQL; SQLite runs one writer at a time)."""
    get_user_model().objects.select_for_update().only("pk").get(pk=user.pk)


@transaction.atomic
def register_user_app(*, user, name: str) -> RegisteredApp:
    """Register an OAuth 2.0 app owned by ``user`` on the Sandbox
    authorization server, as a provider's developer console does: a
    confidential client for the authorization code grant whose redirect URI
    is the portal's callback, so it works at once with "Bring your own OAuth
    2.0 app". The secret is stored hashed (django-oauth-toolkit's default for
    apps people register); the plain value is returned once, here.

    Raises ``AppRegistrationError`` and creates nothing on bad input or when
    the user already has ``APPS_PER_USER`` apps."""
    name = clean_app_name(name)
    _hold_owner(user)
    if user_apps(user).count() >= APPS_PER_USER:
        raise AppRegistrationError(APP_LIMIT_REACHED)
    Application = get_application_model()
    secret = generate_client_secret()
    app = Application(
        user=user,
        name=name,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=callback_url(),
        client_secret=secret,
        hash_client_secret=True,
        skip_authorization=False,
        algorithm="",
    )
    try:
        app.full_clean()
    except ValidationError as error:
        raise AppRegistrationError(
            f"The Sandbox cannot register an app for this portal's callback {callback_url()}: "
            + " ".join(error.messages)
        ) from None
    app.save()  # hashes client_secret in place (ClientSecretField.pre_save)
    return RegisteredApp(application=app, client_secret=secret)
