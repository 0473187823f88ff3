"""Editing a connection's details: name, description, polling interval and
connection fields (changed fields are checked before they are kept)."""

from __future__ import annotations

from django.db import transaction

from connections import unreadable
from connections.actions.check import (
    CHECK_FIELDS,
    ConnectError,
    copy_saved,
    record_check,
    record_state_change,
)
from connections.catalog import connector_of
from connections.health import apply_result, run_check, schedule_next_check, update_expiry_warning
from connections.models import Connection, ConnectionEvent
from connections.validation import clean_fields, clean_name, clean_polling_interval, name_kept
from portal import audit
from portal.models import AuditRecord
from portal.permissions import require_may_change_fields

# What an edit writes of a connection (and, when it ran a check, CHECK_FIELDS).
EDIT_FIELDS = [
    "name",
    "description",
    "polling_interval_seconds",
    "fields",
    "warning",
    "secret_expires_at",
    "next_check_at",
    "updated_at",
]


def edit_connection(
    *,
    connection: Connection,
    name: str,
    description: str,
    polling_interval_seconds,
    fields: dict,
    actor,
) -> list[str]:
    """Change the details; changed connection fields are checked with the
    stored credential first and refused if the check fails. Returns what changed.

    The check sends the stored credential to where the new fields point:
    ``portal.permissions.may_change_fields`` decides who may change them."""
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    name = clean_name(connection.folder, name, exclude_pk=connection.pk)
    interval = clean_polling_interval(polling_interval_seconds)
    new_fields = clean_fields(connector, auth, fields)
    result = None
    if new_fields != connection.fields:
        require_may_change_fields(actor, connection.folder)
        result = run_check(connector, auth, new_fields, unreadable.read_for_use(connection))
        if not result.ok:
            raise ConnectError(f"The new settings were not saved: {result.error}")
    description = (description or "").strip()[:500]
    changed = [
        label
        for label, old, new in (
            ("name", connection.name, name),
            ("description", connection.description, description),
            ("polling interval", connection.polling_interval_seconds, interval),
            ("connection fields", connection.fields, new_fields),
        )
        if old != new
    ]
    if not changed:
        return []
    saved = EDIT_FIELDS + (CHECK_FIELDS if result is not None else [])
    with name_kept(connection.folder, name), transaction.atomic():
        # The row as it is now (locked on PostgreSQL), and only the fields an
        # edit owns written back: a refresh running meanwhile keeps its lease,
        # expiry and token version.
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        previous = locked.state
        locked.name = name
        locked.description = description
        locked.polling_interval_seconds = interval
        locked.fields = new_fields
        if result is not None:
            apply_result(locked, result)
        else:
            update_expiry_warning(locked)
            schedule_next_check(locked)
        locked.save(update_fields=saved)
        ConnectionEvent.objects.create(
            connection=locked,
            kind=ConnectionEvent.Kind.EDITED,
            actor=actor,
            detail="Changed " + ", ".join(changed) + ".",
        )
        audit.record_connection(
            AuditRecord.Action.CONNECTION_EDITED,
            locked,
            actor=actor,
            detail="Changed " + ", ".join(changed) + ".",
        )
        if result is not None:
            record_check(locked, result, actor)
            record_state_change(locked, previous, actor)
    copy_saved(locked, connection, saved)
    return changed
