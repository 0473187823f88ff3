"""The Sandbox OAuth 2.0 authorization server (django-oauth-toolkit), for
`make run` and the test suite: a real, standards-following server that the
Sandbox connector's OAuth flows talk to over HTTP."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from oauth2_provider.models import get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator

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
    from connections.oauth_apps import set_portal_app, stored_portal_app

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
