"""Enabling, disabling and deleting a connection."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from connections.catalog import get_catalog
from connections.health import schedule_next_check
from connections.models import Connection, ConnectionEvent, Process, Trigger
from portal import audit
from portal.models import AuditRecord


@dataclass(frozen=True)
class DeletionImpact:
    """What deleting a connection takes with it: its triggers (deleted too,
    with their events and jobs, only when the deleter says so), and the
    processes that require it (they stay, waiting for another connection)."""

    triggers: list[Trigger]
    processes: list[Process]

    def trigger_names(self) -> list[str]:
        return [trigger.label for trigger in self.triggers]


class TriggersNotConfirmed(Exception):
    """The connection has triggers and the deleter did not say to delete
    them too: nothing was deleted."""

    def __init__(self, connection: Connection, impact: DeletionImpact):
        self.impact = impact
        count = len(impact.triggers)
        super().__init__(
            f"{connection.name} has {count} trigger{'s' if count != 1 else ''} "
            f"({'; '.join(impact.trigger_names())}): confirm that they are deleted with it, "
            "or delete them first. Nothing was deleted."
        )


def deletion_impact(connection: Connection) -> DeletionImpact:
    """The connection's triggers (each labelled "event → process") and the
    processes of its folder that require it; two queries."""
    connector = get_catalog().get(connection.connector_key)
    triggers = list(connection.triggers.select_related("process").order_by("pk"))
    for trigger in triggers:
        event = connector.event(trigger.event_key) if connector else None
        trigger.label = f"{event.name if event else trigger.event_key} → {trigger.process.name}"
    processes = list(
        Process.objects.filter(requirements__connection=connection).distinct().order_by("name")
    )
    return DeletionImpact(triggers=triggers, processes=processes)


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
        audit.record_connection(
            AuditRecord.Action.CONNECTION_ENABLED
            if enabled
            else AuditRecord.Action.CONNECTION_DISABLED,
            connection,
            actor=actor,
        )


def delete_connection(*, connection: Connection, actor, delete_triggers: bool = False) -> None:
    """Delete the connection with its credential and history. A connection
    with triggers goes (and they with it, with their events and jobs) only
    with ``delete_triggers``; else TriggersNotConfirmed, naming them, and
    nothing changes. Processes that require it stay, with that requirement
    left to choose again."""
    with transaction.atomic():
        triggers = connection.triggers.count()
        if not delete_triggers and triggers:
            raise TriggersNotConfirmed(connection, deletion_impact(connection))
        audit.record_connection(
            AuditRecord.Action.CONNECTION_DELETED,
            connection,
            actor=actor,
            detail=f"With its {triggers} trigger(s)." if triggers else "",
        )
        connection.delete()
