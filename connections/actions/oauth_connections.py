"""OAuth 2.0 connections: what a sign-in or a grant with no browser ends in.
The token answer is checked against the provider, then the connection is
stored (new, or reconnected with the same id), or, when a reconnect signed in
as another account, kept waiting for the user to confirm the change.

The protocol itself (authorize URL, token requests, state, PKCE) is
``connections.oauth``'s."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from connections import oauth, vault
from connections.catalog import AuthTypeSpec, ConnectorSpec, get_catalog
from connections.health import CheckResult, apply_result, run_check
from connections.models import Connection, ConnectionEvent, HealthCheck, OAuthFlow
from connections.oauth_apps import ClientCredentials
from connections.validation import clean_fields, clean_name, name_kept
from portal import audit
from portal.models import AuditRecord, Folder


@dataclass(frozen=True)
class Outcome:
    """How connecting ended: the connection; or ``flow``, a changed identity
    awaiting the user's confirmation; or (the callback only) ``error``, with
    the user's own flow it ended when known and the token endpoint's
    ``status_code`` when it refused with one. Nothing is stored on an error."""

    connection: Connection | None = None
    flow: OAuthFlow | None = None
    error: str = ""
    failed_flow: OAuthFlow | None = None
    status_code: int | None = None

    @property
    def retry_flow(self) -> OAuthFlow | None:
        """The failed flow when a new sign-in can start from what it holds
        (not finished, no changed identity waiting)."""
        flow = self.failed_flow
        if flow is None or flow.completed_at is not None or flow.pending_identity:
            return None
        return flow


def complete_authorization(request: HttpRequest, params) -> Outcome:
    """The provider's redirect back: claim the flow (state, user, session),
    check the answer (issuer, error), exchange the code, then finish as
    ``finish_with_token``. A refused sign-in or a name taken meanwhile is
    the outcome's ``error``, in plain words."""
    flow = None
    try:
        flow = oauth.claim_flow(request, params.get("state"))
        exchanged = oauth.exchange_code(flow, params)
        return finish_with_token(
            actor=request.user,
            folder=flow.folder,
            connector=exchanged.connector,
            auth=exchanged.auth,
            client=exchanged.client,
            token=exchanged.token,
            requested_scopes=flow.scopes,
            name=flow.name,
            description=flow.description,
            fields=flow.fields,
            connection=flow.connection,
            flow=flow,
        )
    except oauth.OAuthFlowError as error:
        return Outcome(
            error=str(error),
            failed_flow=flow or getattr(error, "flow", None),
            status_code=error.status_code,
        )
    except ValidationError as error:  # the name was taken while the user signed in
        return Outcome(error=" ".join(error.messages), failed_flow=flow)


def connect_with_grant(
    *,
    actor,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    name: str,
    description: str,
    fields: dict[str, str],
    client: ClientCredentials,
    username: str = "",
    password: str = "",
    connection: Connection | None = None,
) -> Outcome:
    """A grant with no browser redirect (client credentials, password): one
    token request, then the same checks and storage as a sign-in. Name and
    fields as cleaned by the caller."""
    token = oauth.direct_grant_token(
        connector, auth, fields, client, username=username, password=password
    )
    return finish_with_token(
        actor=actor,
        folder=folder,
        connector=connector,
        auth=auth,
        client=client,
        token=token,
        requested_scopes=list(auth.oauth2.default_scopes),
        name=name,
        description=description,
        fields=fields,
        connection=connection,
    )


def reconnect_with_grant(
    *,
    actor,
    connection: Connection,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    fields: dict,
    client: ClientCredentials,
    username: str = "",
    password: str = "",
) -> Outcome:
    """New tokens for an existing connection by a grant with no browser;
    its name and description stay, its fields are cleaned again."""
    return connect_with_grant(
        actor=actor,
        folder=connection.folder,
        connector=connector,
        auth=auth,
        name=connection.name,
        description=connection.description,
        fields=clean_fields(connector, auth, fields),
        client=client,
        username=username,
        password=password,
        connection=connection,
    )


def finish_with_token(
    *,
    actor,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    client: ClientCredentials,
    token: dict,
    requested_scopes: list[str],
    name: str,
    description: str,
    fields: dict[str, str],
    connection: Connection | None = None,
    flow: OAuthFlow | None = None,
) -> Outcome:
    """Check the grant, read the identity, then store the connection (or ask
    to confirm a changed identity on reconnect)."""
    answer = oauth.read_token_answer(connector, auth, client, token, requested_scopes, fields)
    result = run_check(connector, auth, answer.fields, answer.secret)
    if not result.ok:
        raise oauth.OAuthFlowError(f"The new token does not work: {result.error}")
    if (
        connection is not None
        and connection.account_identity
        and result.identity
        and (result.identity != connection.account_identity)
    ):
        if flow is None:
            raise oauth.OAuthFlowError(
                f"These credentials belong to {result.identity}, not {connection.account_identity}."
            )
        # Keep the new tokens sealed in the flow until the user confirms.
        flow.pending_identity = result.identity
        vault.seal_row(flow, {"pending_secret": answer.secret, "pending_fields": answer.fields})
        flow.save(update_fields=["pending_identity", "ciphertext", "key_id"])
        return Outcome(flow=flow)
    stored = store_oauth_connection(
        actor=actor,
        folder=folder,
        connector=connector,
        auth=auth,
        own_app=client.own_app,
        secret=answer.secret,
        warning=answer.warning,
        result=result,
        name=name,
        description=description,
        fields=answer.fields,
        connection=connection,
    )
    if flow is not None:
        OAuthFlow.objects.filter(pk=flow.pk).update(completed_at=timezone.now())
    return Outcome(connection=stored)


def identity_change_warning(connection: Connection, new_identity: str) -> str:
    """What confirming another account means for the connection's triggers
    ("" when it has none): from then on they poll as that account and fire
    for what it sees."""
    count = connection.triggers.count()
    if not count:
        return ""
    its = f"its {count} trigger{'s' if count != 1 else ''}"
    return (
        f"{connection.name} has {count} trigger{'s' if count != 1 else ''}: once you confirm, "
        f"{its} poll as {new_identity} and will see another account's data, firing events "
        f"(and starting processes) for what {new_identity} sees instead of "
        f"{connection.account_identity or 'the account before'}."
    )


def confirm_identity_change(*, flow: OAuthFlow, actor) -> Connection:
    """The user confirmed: the tokens for the other account replace the old ones."""
    if flow.completed_at or not flow.pending_identity or flow.user_id != actor.pk:
        raise oauth.OAuthFlowError("There is nothing to confirm for this sign-in.")
    claimed = OAuthFlow.objects.filter(pk=flow.pk, completed_at__isnull=True).update(
        completed_at=timezone.now()
    )
    if claimed != 1:
        raise oauth.OAuthFlowError("This change was already confirmed.")
    pending = vault.unseal_row(flow)
    connector = get_catalog().get(flow.connector_key)
    auth = connector.auth_type(flow.auth_type)
    result = CheckResult(ok=True, identity=flow.pending_identity)
    return store_oauth_connection(
        actor=actor,
        folder=flow.folder,
        connector=connector,
        auth=auth,
        own_app=flow.own_app,
        secret=pending["pending_secret"],
        warning=None,
        result=result,
        name=flow.name,
        description=flow.description,
        fields=pending["pending_fields"],
        connection=flow.connection,
    )


def store_oauth_connection(
    *,
    actor,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    own_app: bool,
    secret: dict,
    warning: str | None,
    result: CheckResult,
    name: str,
    description: str,
    fields: dict[str, str],
    connection: Connection | None,
) -> Connection:
    """Create the connection, or replace the credentials of an existing one
    (same id, name and folder) on reconnect and first authentication.
    ``warning``: the token's lifetime warning, None to keep the current one."""
    with name_kept(folder, (name or "").strip()), transaction.atomic():
        if connection is None:
            connection = Connection(
                folder=folder,
                connector_key=connector.key,
                auth_type=auth.type,
                own_app=own_app,
                name=clean_name(folder, name).strip(),
                description=description,
                created_by=actor,
                polling_interval_seconds=connector.polling_interval_seconds,
            )
            kind = ConnectionEvent.Kind.CREATED
        else:
            connection = Connection.objects.select_for_update().get(pk=connection.pk)
            kind = ConnectionEvent.Kind.RECONNECTED
        identity_before = connection.account_identity
        connection.fields = fields
        connection.authenticated_by = actor
        connection.token_expires_at = oauth.expiry_of(secret)
        connection.token_lifetime_seconds = oauth.lifetime_of(secret)
        # A new token set: a refresh still running on the old one must not
        # store its answer over it (its lease and version no longer match).
        connection.token_version += 1
        connection.refresh_lease_owner = ""
        connection.refresh_lease_until = None
        connection.refresh_failing_since = None
        if warning is not None:
            connection.warning = warning
        apply_result(connection, result)
        connection.save()
        vault.store_secret(connection, secret)
        ConnectionEvent.objects.create(
            connection=connection,
            kind=kind,
            actor=actor,
            detail=f"Authenticated as {result.identity}." if result.identity else "",
            token_expires_at=connection.token_expires_at,
        )
        if kind == ConnectionEvent.Kind.CREATED:
            audit.record_connection(
                AuditRecord.Action.CONNECTION_CREATED,
                connection,
                actor=actor,
                detail=f"{connector.name}, {auth.display_label}, as {result.identity or 'unknown'}",
            )
        else:
            audit.record_connection(
                AuditRecord.Action.CONNECTION_RECONNECTED,
                connection,
                actor=actor,
                detail=f"Account: {identity_before or 'none'} → {result.identity or 'unknown'}",
            )
        HealthCheck.objects.create(
            connection=connection,
            ok=True,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
        )
    return connection
