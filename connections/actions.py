"""Writes on connections, one named function each, used alike by pages,
the API, tasks and commands. Callers ask ``portal.permissions`` first; these
functions validate data and keep the connection consistent: a connection
whose credential failed its check is never stored."""

from __future__ import annotations

import logging

from django.db import transaction

from connections import refresh, unreadable, vault
from connections.catalog import AuthKind, AuthTypeSpec, ConnectorSpec, get_catalog
from connections.health import (
    CheckResult,
    apply_result,
    run_check,
    schedule_next_check,
    update_expiry_warning,
)
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from connections.validation import (
    clean_fields,
    clean_name,
    clean_polling_interval,
    clean_secret,
    default_polling_interval,
    name_kept,
)
from portal.models import (
    Folder,
)
from portal.permissions import require_may_change_fields

log = logging.getLogger(__name__)


class ConnectError(Exception):
    """The provider did not accept the connection; the message is for the user."""


def connector_of(connection: Connection) -> ConnectorSpec:
    connector = get_catalog().get(connection.connector_key)
    if connector is None:
        raise ConnectError(
            f"The connector {connection.connector_key!r} is no longer in the catalog."
        )
    return connector


def _record(connection: Connection, result: CheckResult, actor) -> None:
    HealthCheck.objects.create(
        connection=connection,
        ok=result.ok,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error="" if result.ok else result.error[:500],
    )
    detail = f"Connected as {result.identity}." if result.ok and result.identity else result.error
    ConnectionEvent.objects.create(
        connection=connection,
        kind=ConnectionEvent.Kind.CHECKED,
        actor=actor,
        detail=(detail or "Check succeeded.")[:500],
    )


def _worth_telling(previous: str, current: str) -> bool:
    """A change people hear about: it broke (Degraded, Needs reconnect,
    Misconfigured), broke differently, or recovered to Connected."""
    if previous == current:
        return False
    if current == ConnectionState.CONNECTED:
        return previous != ConnectionState.NOT_CONNECTED
    return current != ConnectionState.NOT_CONNECTED


def _state_changed(connection: Connection, previous: str, actor=None) -> None:
    """Within the transaction that changed the state: note it in the history
    and, once committed, tell the people responsible (one message per change)."""
    if connection.state == previous:
        return
    ConnectionEvent.objects.create(
        connection=connection,
        kind=ConnectionEvent.Kind.STATE_CHANGED,
        actor=actor,
        detail=(
            f"{ConnectionState(previous).label} → {connection.get_state_display()}."
            + (f" {connection.last_error}" if connection.last_error else "")
        )[:500],
    )
    if _worth_telling(previous, connection.state):
        pk = connection.pk
        transaction.on_commit(lambda: _tell(pk, previous))


def _tell(connection_id: int, previous: str) -> None:
    from connections import notifications

    try:
        notifications.state_changed(connection_id, previous=previous)
    except Exception:  # the check is recorded; a mail server problem must not undo it
        log.exception("Could not send the state change message of connection %s", connection_id)


def create_secret_connection(
    *,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    name: str,
    description: str,
    fields: dict,
    secret: dict,
    created_by,
) -> Connection:
    """Check the credential against the provider, and store the connection
    only if the check succeeds (PAT, API key and basic auth types)."""
    name = clean_name(folder, name)
    fields = clean_fields(connector, auth, fields)
    secret = clean_secret(auth, secret)
    result = run_check(connector, auth, fields, secret)
    if not result.ok:
        raise ConnectError(result.error)
    with name_kept(folder, name), transaction.atomic():
        connection = Connection(
            folder=folder,
            connector_key=connector.key,
            auth_type=auth.type,
            name=name,
            description=(description or "").strip()[:500],
            fields=fields,
            created_by=created_by,
            authenticated_by=created_by,
            polling_interval_seconds=default_polling_interval(connector),
        )
        apply_result(connection, result)
        connection.save()
        vault.store_secret(connection, secret)
        ConnectionEvent.objects.create(
            connection=connection, kind=ConnectionEvent.Kind.CREATED, actor=created_by
        )
        _record(connection, result, created_by)
    return connection


CHECK_FIELDS = [
    "state",
    "last_checked_at",
    "last_success_at",
    "consecutive_failures",
    "last_error",
    "account_identity",
    "next_check_at",
    "secret_expires_at",
    "warning",
    "updated_at",
]


def _oauth_token_for_check(connection: Connection) -> tuple[dict, CheckResult | None, bool]:
    """An OAuth 2.0 connection's token set to check with, refreshed first
    when it expires within the lead time (single-flight, connections/refresh.py).
    Returns (token set, failed check or None, whether a refresh may have run)."""
    from connections import refresh

    secret = vault.read_secret(connection)
    expired_for_good = (
        connection.state != ConnectionState.NEEDS_RECONNECT
        and connection.auth_type != AuthKind.OAUTH2_CLIENT_CREDENTIALS  # renewed instead
        and not refresh.is_fresh(connection)
        and not secret.get("refresh_token")
    )
    if expired_for_good:
        return (
            secret,
            CheckResult(
                ok=False,
                error="The access token has expired and the provider gave no refresh token: "
                "reconnect, and let the app issue refresh tokens (offline access).",
                failure="misconfigured",
            ),
            False,
        )
    try:
        return refresh.refresh_connection(connection.pk), None, True
    except refresh.RefreshError as error:
        current = Connection.objects.only("state", "last_error").get(pk=connection.pk)
        if error.transient:
            failed = CheckResult(
                ok=False,
                error=f"The access token could not be refreshed: {error}",
                failure="unreachable",
            )
        elif current.state == ConnectionState.MISCONFIGURED:
            failed = CheckResult(
                ok=False, error=current.last_error or str(error), failure="misconfigured"
            )
        else:
            failed = CheckResult(
                ok=False, error=current.last_error or str(error), failure="rejected"
            )
        return secret, failed, False


def check_connection(*, connection: Connection, actor=None) -> CheckResult:
    """Run the health check now with the stored credential (an OAuth 2.0
    token refreshed first when it is about to expire), record it, move the
    state machine, schedule the next check, and tell people of a change."""
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    connection.refresh_from_db()
    initial_state = connection.state
    refreshed = False
    try:
        if auth.oauth2 is not None:
            secret, result, refreshed = _oauth_token_for_check(connection)
        else:
            secret, result = vault.read_secret(connection), None
    except vault.VaultError as error:
        # The stored secret cannot be opened (or refreshed, which opens it):
        # nothing is sent, the check fails and the connection is Misconfigured.
        from connections.unreadable import failed_check

        secret, result = {}, failed_check(connection, error)
    if result is None:
        result = run_check(connector, auth, connection.fields, secret)
    with transaction.atomic():
        # The row as it is now (locked on PostgreSQL): a refresh or another
        # check may have moved it meanwhile; counters and state build on it.
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        previous = locked.state
        if refreshed and previous == ConnectionState.CONNECTED and initial_state != previous:
            # The refresh brought it back without telling anyone; the check
            # now says whether it really recovered.
            previous = initial_state
        apply_result(locked, result)
        locked.save(update_fields=CHECK_FIELDS)
        _record(locked, result, actor)
        _state_changed(locked, previous, actor)
    for field in (*CHECK_FIELDS, "check_queued_until"):
        setattr(connection, field, getattr(locked, field))
    return result


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
        if result is not None:
            _record(locked, result, actor)
            _state_changed(locked, previous, actor)
    _copy_fields(locked, connection, saved)
    return changed


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


def _copy_fields(source: Connection, target: Connection, names) -> None:
    """The caller's instance gets what was saved from the row read locked."""
    for name in names:
        setattr(target, name, getattr(source, name))


def replace_secret(*, connection: Connection, secret: dict, actor) -> CheckResult:
    """Check the new secret first; store it (and drop the old) only if it works."""
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    secret = clean_secret(auth, secret)
    result = run_check(connector, auth, connection.fields, secret)
    if not result.ok:
        raise ConnectError(f"The new secret was not saved: {result.error}")
    saved = [*CHECK_FIELDS, "authenticated_by"]
    with refresh.holding_lease(connection.pk):
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        previous = locked.state
        vault.store_secret(locked, secret)
        locked.authenticated_by = actor
        # The old secret's expiry goes with it; the provider's answer may give the new one.
        locked.secret_expires_at = None
        apply_result(locked, result)
        locked.save(update_fields=saved)
        ConnectionEvent.objects.create(
            connection=locked, kind=ConnectionEvent.Kind.SECRET_REPLACED, actor=actor
        )
        _record(locked, result, actor)
        _state_changed(locked, previous, actor)
    _copy_fields(locked, connection, saved)
    return result


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
    connection.delete()


def replace_client_secret(*, connection: Connection, client_secret: str, actor) -> None:
    """A BYOA connection's app got a new client secret: keep it with the
    tokens so that the next reconnect and refresh use it."""
    if not connection.own_app:
        raise ValueError("Only connections with their own OAuth app have a client secret.")
    # The client secret is kept with the token set: a refresh running now
    # would store its answer with the old one, so wait for it, and re-read.
    with refresh.holding_lease(connection.pk):
        secret = unreadable.read_for_use(connection)
        secret["client_secret"] = client_secret.strip()
        vault.store_secret(connection, secret)
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.SECRET_REPLACED,
            actor=actor,
            detail="Client secret of the connection's own OAuth app replaced.",
        )
