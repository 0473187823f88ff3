"""Enabling, disabling and deleting a connection."""

from __future__ import annotations

from django.db import transaction

from connections.health import schedule_next_check
from connections.models import Connection, ConnectionEvent


def set_enabled(*, connection: Connection, enabled: bool, actor) -> None:
    """Disabled connections are never used, refreshed or checked: no next
    check. Enabled again, the next check is the last one plus the interval
    (due at once when that has passed)."""
    if connection.is_enabled == enabled:
        return
    with transaction.atomic():
        connection.is_enabled = enabled
        schedule_next_check(connection)
        connection.check_queued_until = None
        connection.save(
            update_fields=["is_enabled", "next_check_at", "check_queued_until", "updated_at"]
        )
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.ENABLED if enabled else ConnectionEvent.Kind.DISABLED,
            actor=actor,
        )


def delete_connection(*, connection: Connection, actor) -> None:
    """Delete the connection with its credential and history."""
    connection.delete()
