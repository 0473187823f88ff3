"""New connections: with a secret (PAT, API key, basic), or with an OAuth 2.0
grant that needs no browser. The pages and the API call the same functions,
so they validate and refuse alike."""

from __future__ import annotations

from django.db import transaction

from connections import vault
from connections.actions.check import ConnectError, record_check
from connections.actions.oauth_connections import Outcome, connect_with_grant
from connections.catalog import AuthTypeSpec, ConnectorSpec
from connections.health import apply_result, run_check
from connections.models import Connection, ConnectionEvent
from connections.oauth_apps import ClientCredentials
from connections.validation import (
    clean_fields,
    clean_name,
    clean_secret,
    default_polling_interval,
    name_kept,
)
from portal import audit
from portal.models import AuditRecord, Folder


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
        record_check(connection, result, created_by)
        audit.record_connection(
            AuditRecord.Action.CONNECTION_CREATED,
            connection,
            actor=created_by,
            detail=f"{connector.name}, {auth.display_label}",
        )
    return connection


def create_oauth_connection(
    *,
    actor,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    name: str,
    description: str,
    fields: dict,
    client: ClientCredentials,
    username: str = "",
    password: str = "",
) -> Outcome:
    """A new connection by an OAuth 2.0 grant that needs no browser: client
    credentials, or a user name and password (the password grant; the
    password is used once and never kept). Name and fields are cleaned first;
    nothing is stored unless the token works (``OAuthFlowError`` says why)."""
    name = clean_name(folder, name)
    fields = clean_fields(connector, auth, fields)
    return connect_with_grant(
        actor=actor,
        folder=folder,
        connector=connector,
        auth=auth,
        name=name,
        description=description,
        fields=fields,
        client=client,
        username=username,
        password=password,
    )
