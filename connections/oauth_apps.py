"""The client credentials a flow uses: the portal's registered app for a
connector (admin, then settings), or the user's own app (BYOA)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from connections import vault
from connections.models import OAuthApp


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str = ""
    own_app: bool = False

    def __repr__(self) -> str:
        return f"<ClientCredentials {self.client_id} own_app={self.own_app}>"


def stored_portal_app(connector_key: str) -> ClientCredentials | None:
    app = OAuthApp.objects.filter(connector_key=connector_key).first()
    if app is None:
        return None
    return ClientCredentials(app.client_id, vault.unseal_row(app).get("client_secret", ""))


def _configured_app(connector_key: str) -> dict | None:
    """The app ``PORTAL_OAUTH_APPS`` names for a connector, if it has a client ID."""
    configured = settings.PORTAL_OAUTH_APPS.get(connector_key)
    return configured if configured and configured.get("client_id") else None


def portal_app(connector_key: str) -> ClientCredentials | None:
    """The portal's own app for a connector, or None if none is registered."""
    stored = stored_portal_app(connector_key)
    if stored is not None:
        return stored
    configured = _configured_app(connector_key)
    if configured:
        return ClientCredentials(configured["client_id"], configured.get("client_secret", ""))
    return None


def connectors_with_portal_app(connector_keys: set[str]) -> set[str]:
    """Those of ``connector_keys`` for which the portal has its own app
    (``portal_app`` is not None), in one query and without opening a secret."""
    stored = set(
        OAuthApp.objects.filter(connector_key__in=connector_keys).values_list(
            "connector_key", flat=True
        )
    )
    return stored | {key for key in connector_keys if _configured_app(key)}


@transaction.atomic
def set_portal_app(connector_key: str, *, client_id: str, client_secret: str | None) -> OAuthApp:
    """Register or update the portal's app; ``client_secret=None`` keeps the old one."""
    app, created = OAuthApp.objects.get_or_create(
        connector_key=connector_key, defaults={"client_id": client_id}
    )
    old = {} if created else vault.unseal_row(app)
    app.client_id = client_id
    vault.seal_row(
        app,
        {"client_secret": old.get("client_secret", "") if client_secret is None else client_secret},
    )
    app.save()
    return app
