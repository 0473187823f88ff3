"""Writes on connections, one named function each, used alike by pages,
the API, tasks and commands. Callers ask ``portal.permissions`` first; these
functions validate data and keep the connection consistent: a connection
whose credential failed its check is never stored."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from connections import egress, vault
from connections.catalog import AuthTypeSpec, ConnectorSpec, get_catalog
from connections.health import CheckResult, egress_policy, run_check
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from portal.models import Folder

MIN_POLLING_SECONDS = 60
MAX_POLLING_SECONDS = 24 * 60 * 60

FAILURE_STATES = {
    "rejected": ConnectionState.NEEDS_RECONNECT,
    "forbidden": ConnectionState.MISCONFIGURED,
    "not_found": ConnectionState.MISCONFIGURED,
    "unreachable": ConnectionState.DEGRADED,
    "provider": ConnectionState.DEGRADED,
}


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
    cleaned, errors = {}, {}
    for spec in auth.secrets:
        value = (raw.get(spec.key) or "").strip()
        if not value:
            errors[spec.key] = [f"{spec.label} is required."]
        cleaned[spec.key] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_name(folder: Folder, name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the connection a name."]})
    if len(name) > 120:
        raise ValidationError({"name": ["The name is longer than 120 characters."]})
    clash = Connection.objects.filter(folder=folder, name__iexact=name)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(
            {"name": [f"A connection named {name!r} already exists in {folder.name}."]}
        )
    return name


def clean_polling_interval(value) -> int:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValidationError(
            {"polling_interval_seconds": ["Enter the polling interval in seconds."]}
        ) from None
    if not MIN_POLLING_SECONDS <= seconds <= MAX_POLLING_SECONDS:
        raise ValidationError(
            {
                "polling_interval_seconds": [
                    f"The polling interval must be between {MIN_POLLING_SECONDS} seconds "
                    f"and {MAX_POLLING_SECONDS // 3600} hours."
                ]
            }
        )
    return seconds


def _apply_result(connection: Connection, result: CheckResult) -> None:
    now = timezone.now()
    connection.last_checked_at = now
    if result.ok:
        connection.state = ConnectionState.CONNECTED
        connection.last_success_at = now
        connection.consecutive_failures = 0
        connection.last_error = ""
        if result.identity:
            connection.account_identity = result.identity
    else:
        connection.state = FAILURE_STATES.get(result.failure, ConnectionState.DEGRADED)
        connection.consecutive_failures += 1
        connection.last_error = result.error[:500]


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
    with transaction.atomic():
        connection = Connection(
            folder=folder,
            connector_key=connector.key,
            auth_type=auth.type,
            name=name,
            description=(description or "").strip()[:500],
            fields=fields,
            created_by=created_by,
            authenticated_by=created_by,
            polling_interval_seconds=connector.polling_interval_seconds,
        )
        _apply_result(connection, result)
        connection.save()
        vault.store_secret(connection, secret)
        ConnectionEvent.objects.create(
            connection=connection, kind=ConnectionEvent.Kind.CREATED, actor=created_by
        )
        _record(connection, result, created_by)
    return connection


def check_connection(*, connection: Connection, actor=None) -> CheckResult:
    """Run the health check now with the stored credential and record it."""
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    result = run_check(connector, auth, connection.fields, vault.read_secret(connection))
    with transaction.atomic():
        _apply_result(connection, result)
        connection.save(
            update_fields=[
                "state",
                "last_checked_at",
                "last_success_at",
                "consecutive_failures",
                "last_error",
                "account_identity",
                "updated_at",
            ]
        )
        _record(connection, result, actor)
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
    stored credential first and refused if the check fails. Returns what changed."""
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    name = clean_name(connection.folder, name, exclude_pk=connection.pk)
    interval = clean_polling_interval(polling_interval_seconds)
    new_fields = clean_fields(connector, auth, fields)
    result = None
    if new_fields != connection.fields:
        result = run_check(connector, auth, new_fields, vault.read_secret(connection))
        if not result.ok:
            raise ConnectError(f"The new settings were not saved: {result.error}")
    changed = [
        label
        for label, old, new in (
            ("name", connection.name, name),
            ("description", connection.description, (description or "").strip()[:500]),
            ("polling interval", connection.polling_interval_seconds, interval),
            ("connection fields", connection.fields, new_fields),
        )
        if old != new
    ]
    if not changed:
        return []
    with transaction.atomic():
        connection.name = name
        connection.description = (description or "").strip()[:500]
        connection.polling_interval_seconds = interval
        connection.fields = new_fields
        if result is not None:
            _apply_result(connection, result)
        connection.save()
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.EDITED,
            actor=actor,
            detail="Changed " + ", ".join(changed) + ".",
        )
        if result is not None:
            _record(connection, result, actor)
    return changed


def replace_secret(*, connection: Connection, secret: dict, actor) -> CheckResult:
    """Check the new secret first; store it (and drop the old) only if it works."""
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    secret = clean_secret(auth, secret)
    result = run_check(connector, auth, connection.fields, secret)
    if not result.ok:
        raise ConnectError(f"The new secret was not saved: {result.error}")
    with transaction.atomic():
        vault.store_secret(connection, secret)
        connection.authenticated_by = actor
        _apply_result(connection, result)
        connection.save()
        ConnectionEvent.objects.create(
            connection=connection, kind=ConnectionEvent.Kind.SECRET_REPLACED, actor=actor
        )
        _record(connection, result, actor)
    return result


def set_enabled(*, connection: Connection, enabled: bool, actor) -> None:
    if connection.is_enabled == enabled:
        return
    with transaction.atomic():
        connection.is_enabled = enabled
        connection.save(update_fields=["is_enabled", "updated_at"])
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
    with transaction.atomic():
        secret = vault.read_secret(connection)
        secret["client_secret"] = client_secret.strip()
        vault.store_secret(connection, secret)
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.SECRET_REPLACED,
            actor=actor,
            detail="Client secret of the connection's own OAuth app replaced.",
        )
