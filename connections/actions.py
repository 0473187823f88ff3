"""Writes on connections, one named function each, used alike by pages,
the API, tasks and commands. Callers ask ``portal.permissions`` first; these
functions validate data and keep the connection consistent: a connection
whose credential failed its check is never stored."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from connections import egress, refresh, unreadable, vault
from connections.catalog import AuthKind, AuthTypeSpec, ConnectorSpec, get_catalog
from connections.health import CheckResult, egress_policy, parse_expiry, run_check
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from portal.models import (
    MAX_POLLING_INTERVAL_SECONDS,
    MIN_POLLING_INTERVAL_SECONDS,
    Folder,
    TenantSettings,
)
from portal.permissions import require_may_change_fields

log = logging.getLogger(__name__)

# The absolute bounds; the tenant-wide minimum (TenantSettings) may raise the lower one.
MIN_POLLING_SECONDS = MIN_POLLING_INTERVAL_SECONDS
MAX_POLLING_SECONDS = MAX_POLLING_INTERVAL_SECONDS

# What a failed check says about the connection. Transient failures (the
# provider unreachable, 5xx, 429) turn a connection Degraded only after
# PORTAL_HEALTH_DEGRADED_AFTER of them in a row; the others change the state
# at once: the credential was refused (Needs reconnect) or the connection is
# set up wrong (Misconfigured: 403, 404, missing scopes, no refresh token).
FAILURE_STATES = {
    "rejected": ConnectionState.NEEDS_RECONNECT,
    "forbidden": ConnectionState.MISCONFIGURED,
    "not_found": ConnectionState.MISCONFIGURED,
    "misconfigured": ConnectionState.MISCONFIGURED,
    "unreachable": ConnectionState.DEGRADED,
    "provider": ConnectionState.DEGRADED,
}
TRANSIENT_STATUS = {408, 425, 429}
BROKEN_STATES = {ConnectionState.NEEDS_RECONNECT, ConnectionState.MISCONFIGURED}

# Connection fields that may say when a PAT or client secret expires (a
# connector declares one of them as a field, e.g. for a client secret).
SECRET_EXPIRY_FIELDS = ("secret_expires_on", "secret_expires_at")
SECRET_EXPIRY_WARNING_ENDS = ("replace it before then.", "replace it now.")


class ConnectError(Exception):
    """The provider did not accept the connection; the message is for the user."""


def connector_of(connection: Connection) -> ConnectorSpec:
    connector = get_catalog().get(connection.connector_key)
    if connector is None:
        raise ConnectError(
            f"The connector {connection.connector_key!r} is no longer in the catalog."
        )
    return connector


def clean_fields(connector: ConnectorSpec, auth: AuthTypeSpec, raw: dict) -> dict[str, str]:
    """Validated connection fields, or ValidationError naming each bad field."""
    cleaned, errors = {}, {}
    for spec in (*connector.fields, *auth.fields):
        try:
            cleaned[spec.key] = spec.clean(raw.get(spec.key))
            if spec.type == "url" and cleaned[spec.key]:
                # Say early and plainly when an address is private, loopback or
                # metadata; the connect-time check of the resolved address still applies.
                egress.check_url(cleaned[spec.key], egress_policy(connector))
        except ValidationError as error:
            errors[spec.key] = error.messages
        except egress.EgressDenied as error:
            errors[spec.key] = [str(error)]
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_secret(auth: AuthTypeSpec, raw: dict) -> dict[str, str]:
    """The auth type's secrets, trimmed. Each is required, and none may hold
    a line break or another control character (a tab aside): secrets travel
    in request headers, where a line break would start another header."""
    cleaned, errors = {}, {}
    for spec in auth.secrets:
        value = (raw.get(spec.key) or "").strip()
        if not value:
            errors[spec.key] = [f"{spec.label} is required."]
        elif any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            errors[spec.key] = [
                f"{spec.label} must not contain line breaks or other control characters."
            ]
        cleaned[spec.key] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


# The messages of the checks below; the pages' forms say the same.
NAME_MAX_LENGTH = 120
NAME_REQUIRED = "Give the connection a name."
NAME_TOO_LONG = f"The name is longer than {NAME_MAX_LENGTH} characters."
POLLING_NOT_A_NUMBER = "Enter the polling interval in seconds."


def _name_taken(folder: Folder, name: str) -> ValidationError:
    return ValidationError(
        {"name": [f"A connection named {name!r} already exists in {folder.name}."]}
    )


def clean_name(folder: Folder, name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": [NAME_REQUIRED]})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError({"name": [NAME_TOO_LONG]})
    clash = Connection.objects.filter(folder=folder, name__iexact=name)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise _name_taken(folder, name)
    return name


@contextmanager
def name_kept(folder: Folder, name: str) -> Iterator[None]:
    """Around the transaction that saves a connection under ``name``
    (``clean_name`` found it free): when another request took the name in
    between, the database refuses the row, and the caller gets the same
    message as if it had asked after the other (nothing is saved)."""
    try:
        yield
    except IntegrityError:
        if Connection.objects.filter(folder=folder, name=name).exists():
            raise _name_taken(folder, name) from None
        raise


def tenant_min_polling_seconds() -> int:
    return max(MIN_POLLING_SECONDS, TenantSettings.load().min_polling_interval_seconds)


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} seconds"


def clean_polling_interval(value, *, minimum: int | None = None) -> int:
    """Seconds between checks, at least the tenant-wide minimum, at most a day."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValidationError({"polling_interval_seconds": [POLLING_NOT_A_NUMBER]}) from None
    minimum = tenant_min_polling_seconds() if minimum is None else minimum
    if seconds < minimum:
        raise ValidationError(
            {
                "polling_interval_seconds": [
                    f"The polling interval must be at least {minimum} seconds "
                    f"({_duration(minimum)}), the tenant-wide minimum."
                ]
            }
        )
    if seconds > MAX_POLLING_SECONDS:
        raise ValidationError(
            {
                "polling_interval_seconds": [
                    f"The polling interval must be at most {MAX_POLLING_SECONDS} seconds "
                    f"({_duration(MAX_POLLING_SECONDS)})."
                ]
            }
        )
    return seconds


def default_polling_interval(connector: ConnectorSpec) -> int:
    """The connector's default, raised to the tenant-wide minimum."""
    return min(
        MAX_POLLING_SECONDS, max(connector.polling_interval_seconds, tenant_min_polling_seconds())
    )


def effective_polling_interval(connection: Connection, minimum: int | None = None) -> int:
    """The connection's interval, never below the tenant-wide minimum (which
    may have been raised after the interval was chosen)."""
    minimum = tenant_min_polling_seconds() if minimum is None else minimum
    return max(connection.polling_interval_seconds, minimum)


def schedule_next_check(connection: Connection, *, minimum: int | None = None) -> None:
    """next_check_at = last check + polling interval; None while the
    connection is disabled or not yet connected (never checked by the sweep)."""
    if not connection.is_enabled or connection.state == ConnectionState.NOT_CONNECTED:
        connection.next_check_at = None
        return
    last = connection.last_checked_at or timezone.now()
    connection.next_check_at = last + timedelta(
        seconds=effective_polling_interval(connection, minimum)
    )


def is_transient(result: CheckResult) -> bool:
    if result.failure == "unreachable":
        return True
    if result.failure == "provider":
        code = result.status_code
        return code is None or code >= 500 or code in TRANSIENT_STATUS
    return False


def failure_state(result: CheckResult) -> str:
    if is_transient(result):
        return ConnectionState.DEGRADED
    # Any other refusal of the health request (400, 405, 410, 422...): the
    # request the connection makes is wrong, which retrying will not fix.
    return FAILURE_STATES.get(result.failure, ConnectionState.MISCONFIGURED)


def _apply_result(connection: Connection, result: CheckResult) -> None:
    """The health state machine, on the connection in memory (callers save).

    Success: Connected, failures reset. Credentials refused: Needs reconnect.
    403 / 404 / missing scopes / no refresh token: Misconfigured. Transient
    failures count, and turn a connection Degraded only after
    PORTAL_HEALTH_DEGRADED_AFTER in a row (one timeout does not flip a healthy
    connection); they never hide a Needs reconnect or Misconfigured state."""
    now = timezone.now()
    connection.last_checked_at = now
    if result.ok:
        connection.state = ConnectionState.CONNECTED
        connection.last_success_at = now
        connection.consecutive_failures = 0
        connection.last_error = ""
        if result.identity:
            connection.account_identity = result.identity
        if result.secret_expires_at:
            connection.secret_expires_at = result.secret_expires_at
    else:
        connection.consecutive_failures += 1
        connection.last_error = result.error[:500]
        if not is_transient(result):
            connection.state = failure_state(result)
        elif connection.state in BROKEN_STATES or connection.state == ConnectionState.NOT_CONNECTED:
            pass  # still broken (or never connected): a timeout says nothing new
        elif connection.consecutive_failures >= settings.PORTAL_HEALTH_DEGRADED_AFTER:
            connection.state = ConnectionState.DEGRADED
    _update_expiry_warning(connection)
    schedule_next_check(connection)


def _field_expiry(connection: Connection) -> datetime | None:
    for key in SECRET_EXPIRY_FIELDS:
        value = (connection.fields or {}).get(key)
        if value:
            return parse_expiry(str(value))
    return None


def _secret_label(connection: Connection) -> str:
    connector = get_catalog().get(connection.connector_key)
    auth = connector.auth_type(connection.auth_type) if connector else None
    if auth and auth.secrets:
        return auth.secrets[0].label
    if connection.own_app:
        return "Client secret"
    return "Secret"


def _update_expiry_warning(connection: Connection) -> None:
    """Warn ahead of a known PAT or client secret expiry; clear our own
    warning (never another one) when it no longer applies."""
    expires = _field_expiry(connection) or connection.secret_expires_at
    connection.secret_expires_at = expires
    ours = connection.warning.endswith(SECRET_EXPIRY_WARNING_ENDS)
    lead = timedelta(days=settings.PORTAL_SECRET_EXPIRY_WARNING_DAYS)
    now = timezone.now()
    if expires is None or expires - now > lead:
        if ours:
            connection.warning = ""
        return
    if connection.warning and not ours:
        return  # a standing warning of another kind stays
    label = _secret_label(connection)
    day = expires.astimezone(UTC).strftime("%Y-%m-%d")
    if expires <= now:
        connection.warning = f"{label} expired on {day} UTC: replace it now."
        return
    days = (expires - now).days
    when = "today" if days == 0 else f"in {days} day" + ("s" if days != 1 else "")
    connection.warning = f"{label} expires on {day} UTC ({when}): replace it before then."


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
        _apply_result(connection, result)
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
        _apply_result(locked, result)
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
            _apply_result(locked, result)
        else:
            _update_expiry_warning(locked)
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
        _apply_result(locked, result)
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
