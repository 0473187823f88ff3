"""Replacing what a connection signs in with: the secret of a PAT, API key
or basic connection, or the client secret of a connection's own OAuth app."""

from __future__ import annotations

from connections import refresh, unreadable, vault
from connections.actions.check import (
    CHECK_FIELDS,
    ConnectError,
    copy_saved,
    record_check,
    record_state_change,
)
from connections.catalog import connector_of
from connections.health import CheckResult, apply_result, run_check
from connections.models import Connection, ConnectionEvent
from connections.validation import clean_secret
from portal import audit
from portal.models import AuditRecord


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
        audit.record_connection(AuditRecord.Action.SECRET_REPLACED, locked, actor=actor)
        record_check(locked, result, actor)
        record_state_change(locked, previous, actor)
    copy_saved(locked, connection, saved)
    return result


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
        audit.record_connection(AuditRecord.Action.CLIENT_SECRET_REPLACED, connection, actor=actor)
