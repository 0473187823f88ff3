"""Checking a connection now, and what every write that checks records: the
health check row, the history, a state change and the message it sends."""

from __future__ import annotations

import logging

from django.db import transaction

from connections import notifications, refresh, vault
from connections.catalog import AuthKind, connector_of
from connections.health import CheckResult, apply_result, run_check
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from connections.unreadable import failed_check

log = logging.getLogger(__name__)

# What a check writes of a connection.
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


class ConnectError(Exception):
    """The provider did not accept the connection; the message is for the user."""


def record_check(connection: Connection, result: CheckResult, actor) -> None:
    """The check's row and its line in the connection's history."""
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


def record_state_change(connection: Connection, previous: str, actor=None) -> None:
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
    try:
        notifications.state_changed(connection_id, previous=previous)
    except Exception:  # the check is recorded; a mail server problem must not undo it
        log.exception("Could not send the state change message of connection %s", connection_id)


def copy_saved(source: Connection, target: Connection, names) -> None:
    """The caller's instance gets what was saved from the row read locked."""
    for name in names:
        setattr(target, name, getattr(source, name))


def _oauth_token_for_check(connection: Connection) -> tuple[dict, CheckResult | None, bool]:
    """An OAuth 2.0 connection's token set to check with, refreshed first
    when it expires within the lead time (single-flight, connections/refresh.py).
    Returns (token set, failed check or None, whether a refresh may have run)."""
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
            # The token endpoint's status when it answered one (503, 429):
            # recorded with the check, it picks the troubleshooting entry.
            failed = CheckResult(
                ok=False,
                error=f"The access token could not be refreshed: {error}",
                status_code=error.status_code,
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
        record_check(locked, result, actor)
        record_state_change(locked, previous, actor)
    copy_saved(locked, connection, (*CHECK_FIELDS, "check_queued_until"))
    return result
