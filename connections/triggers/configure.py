"""Adding, changing, pausing and removing triggers. Permissions are the
caller's to ask (``portal.permissions``: Triggers - Manage); these functions
check that the trigger makes sense: the event exists for the connection's
connector, its filters are valid, the connection was granted the scopes the
event needs, and the process is of the connection's folder."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from connections import oauth
from connections.catalog import connector_of
from connections.catalog.events import clean_filters, missing_scopes
from connections.catalog.schema import ConnectorSpec, EventSpec
from connections.models import Connection, Credential, Process, Trigger
from connections.triggers.polling import paused_because
from connections.triggers.tasks import poll_now_task
from connections.unreadable import read_for_use
from portal import audit
from portal.models import AuditRecord


class MissingScopes(ValidationError):
    """The connection lacks scopes the event needs: ``scopes`` names them;
    reconnecting with them granted is the way out."""

    def __init__(self, connection: Connection, event: EventSpec, scopes: list[str]):
        super().__init__(
            f"{connection.name} was not granted {', '.join(scopes)}, which {event.name} needs: "
            "reconnect it with "
            + ("that scope" if len(scopes) == 1 else "those scopes")
            + " granted, then add the trigger.",
            code="missing_scopes",
        )
        self.scopes = scopes


def granted_scopes(connection: Connection) -> list[str] | None:
    """The scopes the provider granted an OAuth 2.0 connection, as stored
    with its token set (the token answer's ``scope``); None when the provider
    did not say (then the requested scopes were granted, which the portal does
    not keep) or the connection has no OAuth 2.0 token set."""
    try:
        secret = read_for_use(connection)
    except Credential.DoesNotExist:
        return None
    text = secret.get("scope") or ""
    return oauth.split_scopes(text) if text else None


def _event(connector: ConnectorSpec, event_key: str) -> EventSpec:
    event = connector.event(event_key or "")
    if event is None:
        raise ValidationError(
            {"event_key": f"{connector.name} has no event {event_key!r} to trigger on."}
        )
    return event


def _check_scopes(connection: Connection, connector: ConnectorSpec, event: EventSpec) -> None:
    auth = connector.auth_type(connection.auth_type)
    if auth is None or auth.oauth2 is None or not event.scopes:
        return
    granted = granted_scopes(connection)
    if granted is None:
        return  # the provider did not list them: a poll refused for scope will say so
    missing = missing_scopes(event, auth, granted)
    if missing:
        raise MissingScopes(connection, event, missing)


def _check_process(connection: Connection, process: Process) -> None:
    if process.folder_id != connection.folder_id:
        raise ValidationError(
            {"process": f"{process.name} is not a process of {connection.name}'s folder."}
        )


def create_trigger(
    *,
    connection: Connection,
    event_key: str,
    filters: dict[str, Any],
    process: Process,
    include_existing: bool = False,
    enabled: bool = True,
    created_by=None,
    process_elsewhere: bool = False,
) -> Trigger:
    """A trigger on ``connection`` for its connector's event ``event_key``,
    starting ``process``. Its first poll is due now: it fires nothing and
    takes the provider's newest item as where to start (or, with
    ``include_existing``, fires what exists). ValidationError (by field) for
    an unknown event, bad filters or a process of another folder;
    MissingScopes naming what the connection was not granted. Nothing is
    made then. ``process_elsewhere``: the process may be of another folder
    (a solution deployed into a folder links a connection of another one;
    the deployer's access to it was checked by the caller)."""
    connector = connector_of(connection)
    event = _event(connector, event_key)
    cleaned = clean_filters(event, filters or {})
    if include_existing and not event.can_include_existing:
        raise ValidationError({"include_existing": f"{event.name} cannot include existing items."})
    if not process_elsewhere:
        _check_process(connection, process)
    _check_scopes(connection, connector, event)
    with transaction.atomic():
        trigger = Trigger.objects.create(
            connection=connection,
            event_key=event.key,
            filters=cleaned,
            process=process,
            include_existing=include_existing,
            enabled=enabled,
            created_by=created_by,
            next_poll_at=timezone.now() if enabled else None,
        )
        _record(AuditRecord.Action.TRIGGER_CREATED, trigger, actor=created_by)
    return trigger


def edit_trigger(
    trigger: Trigger,
    *,
    filters: dict[str, Any] | None = None,
    process: Process | None = None,
    keep_cursor: bool = False,
) -> Trigger:
    """New filters and/or another process. Changed filters start the trigger
    again from now (the cursor was for the old query), unless
    ``keep_cursor``: a solution's upgrade changes a trigger in place and
    goes on from where it was, neither replaying nor skipping items."""
    connection = trigger.connection
    event = _event(connector_of(connection), trigger.event_key)
    changed = ["updated_at"]
    if filters is not None:
        cleaned = clean_filters(event, filters)
        if cleaned != trigger.filters and keep_cursor:
            trigger.filters = cleaned
            changed.append("filters")
        elif cleaned != trigger.filters:
            trigger.filters, trigger.cursor = cleaned, ""
            trigger.include_existing = False
            changed += ["filters", "cursor", "include_existing"]
    if process is not None and process.pk != trigger.process_id:
        _check_process(connection, process)
        trigger.process = process
        changed.append("process")
    with transaction.atomic():
        trigger.save(update_fields=changed)
        if len(changed) > 1:
            what = ", ".join(name for name in changed if name in {"filters", "process"})
            _record(AuditRecord.Action.TRIGGER_EDITED, trigger, detail=f"Changed {what}.")
    return trigger


def enable_trigger(trigger: Trigger) -> None:
    """Polled again from where it stopped; due now."""
    now = timezone.now()
    with transaction.atomic():
        Trigger.objects.filter(pk=trigger.pk).update(
            enabled=True,
            next_poll_at=now,
            consecutive_failures=0,
            backoff_until=None,
            updated_at=now,
        )
        _record(AuditRecord.Action.TRIGGER_ENABLED, trigger)
    trigger.refresh_from_db()


def disable_trigger(trigger: Trigger) -> None:
    """Not polled until enabled again (the cursor is kept)."""
    with transaction.atomic():
        Trigger.objects.filter(pk=trigger.pk).update(
            enabled=False, next_poll_at=None, poll_queued_until=None, updated_at=timezone.now()
        )
        _record(AuditRecord.Action.TRIGGER_DISABLED, trigger)
    trigger.refresh_from_db()


def delete_trigger(trigger: Trigger) -> None:
    """The trigger goes, with its events, jobs and deliveries."""
    with transaction.atomic():
        _record(AuditRecord.Action.TRIGGER_DELETED, trigger)
        trigger.delete()


def _record(action: str, trigger: Trigger, *, actor=None, detail: str = "") -> None:
    """A change to a trigger, audited with its connection's folder (the
    actor: the request's user when not given)."""
    connection = trigger.connection
    audit.record(
        action,
        actor=actor,
        folder_id=connection.folder_id,
        target=("trigger", trigger.pk, f"{trigger.event_key} on {connection.name}"),
        detail=detail,
    )


class PollRefused(Exception):
    """Run poll now refused: the trigger is disabled or its connection paused."""


def queue_poll(trigger: Trigger) -> None:
    """Run poll now: a poll of the trigger queued after commit, due or not;
    ``PollRefused`` says why when it cannot poll."""
    if not trigger.enabled:
        raise PollRefused("The trigger is disabled: enable it to poll.")
    reason = paused_because(trigger.connection)
    if reason:
        raise PollRefused(reason)
    poll_now_task.delay_on_commit(trigger.pk)
