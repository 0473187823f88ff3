"""Checking a connection now, and what every write that checks records: the
health check row, the history, a state change and the message it sends."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from connections import notifications, refresh, vault
from connections.catalog import AuthKind, ConnectorMissing, connector_of
from connections.engine import Batch, host_of, update_grouped
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


def check_rows(
    connection: Connection, result: CheckResult, actor
) -> tuple[HealthCheck, ConnectionEvent]:
    """The check's row and its line in the connection's history, unsaved."""
    detail = f"Connected as {result.identity}." if result.ok and result.identity else result.error
    return (
        HealthCheck(
            connection=connection,
            ok=result.ok,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error="" if result.ok else result.error[:500],
        ),
        ConnectionEvent(
            connection=connection,
            kind=ConnectionEvent.Kind.CHECKED,
            actor=actor,
            detail=(detail or "Check succeeded.")[:500],
        ),
    )


def record_check(connection: Connection, result: CheckResult, actor) -> None:
    """The check's row and its line in the connection's history."""
    check_row, event = check_rows(connection, result, actor)
    check_row.save()
    event.save()


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
    event = state_change(connection, previous, actor)
    if event is not None:
        event.save()


def state_change(connection: Connection, previous: str, actor=None) -> ConnectionEvent | None:
    """``record_state_change``'s history line, unsaved (None: no change); the
    message is sent once the caller's transaction commits."""
    if connection.state == previous:
        return None
    event = ConnectionEvent(
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
    return event


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
    secret = vault.open_credential(connection.credential)
    usable = connection.is_enabled and connection.state != ConnectionState.NEEDS_RECONNECT
    if usable and refresh.is_fresh(connection):
        return secret, None, False
    expired_for_good = (
        connection.state != ConnectionState.NEEDS_RECONNECT
        and connection.auth_type != AuthKind.OAUTH2_CLIENT_CREDENTIALS  # renewed instead
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


@dataclass(frozen=True)
class Checked:
    """One check made, waiting to be recorded. ``initial_state``: the state
    before it; ``refreshed``: a token refresh ran first (and may have moved
    the state back to Connected without telling anyone)."""

    connection: Connection
    result: CheckResult
    initial_state: str
    refreshed: bool = False


def run_connection_check(connection: Connection, connector, batch: Batch) -> Checked:
    """Send the connection's health request with its stored credential (read
    with it: ``select_related("credential")``; an OAuth 2.0 token refreshed
    first when it is about to expire), through the batch's session."""
    auth = connector.auth_type(connection.auth_type)
    initial_state = connection.state
    refreshed = False
    try:
        if auth.oauth2 is not None:
            secret, result, refreshed = _oauth_token_for_check(connection)
        else:
            secret, result = vault.open_credential(connection.credential), None
    except vault.VaultError as error:
        # The stored secret cannot be opened (or refreshed, which opens it):
        # nothing is sent, the check fails and the connection is Misconfigured.
        secret, result = {}, failed_check(connection, error)
    if result is None:
        url = connector.health_check_url(connection.fields, auth.type)
        held = batch.held_until(host_of(url))
        if held is not None:
            result = CheckResult(
                ok=False,
                error=f"{connector.name} is limiting this portal's requests to {host_of(url)} "
                f"until {held:%H:%M:%S} UTC.",
                failure="provider",
                status_code=429,
                retry_after=max(1, int((held - timezone.now()).total_seconds()) + 1),
            )
        else:
            result = run_check(
                connector, auth, connection.fields, secret, session=batch.session(connector)
            )
            if result.retry_after:
                until = timezone.now() + timedelta(seconds=result.retry_after)
                batch.hold(connector, url, until, result.error)
    return Checked(connection, result, initial_state, refreshed)


def record_checks(checked: list[Checked], actor, batch: Batch) -> dict[int, Connection]:
    """Record checks made: on each connection's row as it is now (locked on
    PostgreSQL: a refresh or another check may have moved it meanwhile), the
    state machine moved, the next check scheduled, the queued mark cleared;
    the check rows and history lines. One transaction, whatever the number
    of checks: a lock, an UPDATE per distinct result (mostly one) and two
    INSERTs. Returns the rows saved."""
    if not checked:
        return {}
    now = timezone.now()
    saved: dict[int, Connection] = {}
    check_rows_: list[HealthCheck] = []
    events: list[ConnectionEvent] = []
    with transaction.atomic():
        locked = {
            row.pk: row
            for row in Connection.objects.select_for_update()
            .filter(pk__in=[item.connection.pk for item in checked])
            .order_by("pk")
        }
        for item in checked:
            row = locked.get(item.connection.pk)
            if row is None:
                continue  # deleted meanwhile
            previous = row.state
            if (
                item.refreshed
                and previous == ConnectionState.CONNECTED
                and item.initial_state != previous
            ):
                # The refresh brought it back without telling anyone; the
                # check now says whether it really recovered.
                previous = item.initial_state
            apply_result(row, item.result, minimum=batch.minimum_interval, now=now)
            row.check_queued_until = None
            row.updated_at = now
            check_row, event = check_rows(row, item.result, actor)
            check_rows_.append(check_row)
            events.append(event)
            change = state_change(row, previous, actor)
            if change is not None:
                events.append(change)
            saved[row.pk] = row
        update_grouped(Connection.objects, saved.values(), [*CHECK_FIELDS, "check_queued_until"])
        HealthCheck.objects.bulk_create(check_rows_)
        ConnectionEvent.objects.bulk_create(events)
    return saved


def check_connection(*, connection: Connection, actor=None) -> CheckResult:
    """Run the health check now with the stored credential (an OAuth 2.0
    token refreshed first when it is about to expire), record it, move the
    state machine, schedule the next check, and tell people of a change."""
    connector = connector_of(connection)
    with Batch() as batch:
        current = Connection.objects.select_related("credential").get(pk=connection.pk)
        checked = run_connection_check(current, connector, batch)
        saved = record_checks([checked], actor, batch)
    if connection.pk not in saved:
        raise Connection.DoesNotExist(f"Connection {connection.pk} was deleted.")
    copy_saved(saved[connection.pk], connection, (*CHECK_FIELDS, "check_queued_until"))
    return checked.result


def check_connections(connection_ids: Sequence[int], batch: Batch) -> int:
    """The health sweep's checks of these connections, those still due and
    enabled: read in one query with their credentials, sent through the
    batch's sessions, recorded together (``record_checks``). Every queued
    mark is cleared. Returns how many were checked."""
    due = Connection.objects.select_related("credential").filter(
        pk__in=connection_ids, is_enabled=True, next_check_at__lte=timezone.now()
    )
    checked: list[Checked] = []
    for connection in due:
        try:
            checked.append(run_connection_check(connection, connector_of(connection), batch))
        except ConnectorMissing:
            log.warning("Connection %s: its connector is no longer in the catalog.", connection.pk)
        except Exception:
            log.exception("Checking connection %s failed.", connection.pk)
    saved = record_checks(checked, None, batch)
    rest = set(connection_ids) - set(saved)
    if rest:
        Connection.objects.filter(pk__in=rest).update(check_queued_until=None)
    return len(saved)
