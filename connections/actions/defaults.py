"""A folder's default connection for a connector: the one an automation
gets when it names none."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from connections.catalog import get_catalog
from connections.models import Connection, ConnectionEvent
from portal import audit
from portal.models import AuditRecord


def _connector_name(connection: Connection) -> str:
    connector = get_catalog().get(connection.connector_key)
    return connector.name if connector else connection.connector_key


def set_default(*, connection: Connection, actor) -> None:
    """Make the connection its folder's default for its connector (the
    previous default, if any, stops being it), in one transaction."""
    if connection.is_default:
        return
    defaults = Connection.objects.filter(
        folder_id=connection.folder_id, connector_key=connection.connector_key, is_default=True
    )
    with transaction.atomic():
        for attempt in (1, 2):
            defaults.update(is_default=False)
            try:
                with transaction.atomic():
                    Connection.objects.filter(pk=connection.pk).update(is_default=True)
                break
            except IntegrityError:
                # Another default was set at the same moment: the later one wins.
                if attempt == 2:
                    raise
        connection.is_default = True
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.EDITED,
            actor=actor,
            detail=f"Made the folder's default {_connector_name(connection)} connection.",
        )
        audit.record_connection(AuditRecord.Action.DEFAULT_SET, connection, actor=actor)


def clear_default(*, connection: Connection, actor) -> None:
    """The folder has no default connection for the connector any more."""
    if not connection.is_default:
        return
    with transaction.atomic():
        Connection.objects.filter(pk=connection.pk).update(is_default=False)
        connection.is_default = False
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.EDITED,
            actor=actor,
            detail="No longer the folder's default connection.",
        )
        audit.record_connection(AuditRecord.Action.DEFAULT_CLEARED, connection, actor=actor)
