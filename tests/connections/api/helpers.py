"""Rows and observations the API tests share."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from connections import vault
from connections.models import Connection, ConnectionEvent, Credential, HealthCheck
from portal.models import ApiKey, AuditRecord, Folder
from tests.factories import ConnectionFactory

API = "/api/v1"
# The secret every prepared connection starts with (the fake provider refuses it).
ORIGINAL_TOKEN = "ghp_api_suite_original_secret_0001"

PERMISSION_LABELS = {
    "view": "Connections - View",
    "use": "Connections - Use",
    "create": "Connections - Create",
    "edit": "Connections - Edit",
    "delete": "Connections - Delete",
}


def refused_message(needed: str) -> str:
    return f"You do not have {PERMISSION_LABELS[needed]} in this folder."


def make_connection(
    folder: Folder,
    name: str = "Robot",
    *,
    connector: str = "fakehub",
    secret: dict | None = None,
    **extra,
) -> Connection:
    """A connected connection named Robot holding the secret every API test starts with."""
    return ConnectionFactory(
        folder=folder,
        name=name,
        connector_key=connector,
        secret=secret or {"token": ORIGINAL_TOKEN},
        **extra,
    )


def snapshot(*folders: Folder) -> dict:
    """Everything a refused request must leave as it was: the connections of
    the folders with their stored secrets, their history and the audit log."""
    connections = list(Connection.objects.filter(folder__in=folders).order_by("pk").values())
    for row in connections:
        row.pop("updated_at")
        stored = Credential.objects.filter(connection_id=row["id"]).exists()
        row["secret"] = vault.read_secret(Connection(pk=row["id"])) if stored else None
    return {
        "connections": connections,
        "events": ConnectionEvent.objects.count(),
        "checks": HealthCheck.objects.count(),
        "audit": AuditRecord.objects.filter(action=AuditRecord.Action.CREDENTIALS_READ).count(),
    }


def expire(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def body(response) -> dict:
    """The JSON answer, with the status and text in the failure message if it is not JSON."""
    assert response["Content-Type"].startswith("application/json"), (
        response.status_code,
        response.content[:500],
    )
    return response.json()
