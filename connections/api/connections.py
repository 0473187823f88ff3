"""Connections through the API: read one, and every write that needs no
browser consent. The same domain functions as the pages
(``connections.actions``), so the same permission checks, validation
messages and refusals."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Query, Router, Status

from connections import runtime
from connections.actions import check, create, credentials, defaults, details, lifecycle
from connections.api.folders import router as folders_router
from connections.api.schemas import (
    CheckOut,
    Conflict,
    ConnectionCreate,
    ConnectionEdit,
    ConnectionOut,
    DeleteConnectionQuery,
    SecretReplace,
    answers,
)
from connections.api.scope import scoped_connection, scoped_folder
from connections.catalog import get_catalog
from connections.catalog.schema import SECRET_AUTH_KINDS, AuthKind
from connections.models import Connection
from connections.oauth_apps import ClientCredentials, portal_app
from portal.permissions import Action

router = Router()

# Every operation on one connection or folder: 403 and 404. A write with a
# body: 400 when it is not JSON, 422 for refused data.
REFUSALS = (403, 404)
WRITE = (400, 403, 404, 422)
DIRECT_GRANTS = (AuthKind.OAUTH2_PASSWORD, AuthKind.OAUTH2_CLIENT_CREDENTIALS)
API_CREATABLE = (*sorted(SECRET_AUTH_KINDS), *DIRECT_GRANTS)


def _out(connection: Connection) -> dict:
    connection = Connection.objects.select_related("authenticated_by").get(pk=connection.pk)
    return ConnectionOut.of(connection)


@router.get(
    "/connections/{int:connection_id}",
    response=answers({200: ConnectionOut}, *REFUSALS),
    summary="One connection (no secrets)",
)
def get_connection(request: HttpRequest, connection_id: int) -> dict:
    connection = scoped_connection(
        request, connection_id, Action.VIEW_CONNECTIONS, related=("authenticated_by",)
    )
    return ConnectionOut.of(connection)


def _required(secret: dict[str, str], *labels: tuple[str, str]) -> None:
    errors = {
        key: [f"{label} is required."]
        for key, label in labels
        if not (secret.get(key) or "").strip()
    }
    if errors:
        raise ValidationError(errors)


CLIENT_LABELS = (("client_id", "Client ID"), ("client_secret", "Client Secret"))


def _client(secret: dict[str, str], connector_key: str, *, needed: bool) -> ClientCredentials:
    """The app that asks for the token: the caller's own (``client_id`` and
    ``client_secret`` in ``secret``, kept sealed with the tokens) or, where
    the grant allows it and none is given, the portal's registered app."""
    if not needed and not secret.get("client_id"):
        registered = portal_app(connector_key)
        if registered is not None:
            return registered
    _required(secret, *CLIENT_LABELS)
    return ClientCredentials(
        secret["client_id"].strip(), secret["client_secret"].strip(), own_app=True
    )


def _direct_grant(request: HttpRequest, folder, connector, auth, data: ConnectionCreate):
    """OAuth 2.0 grants with no browser: client credentials, and the
    password grant (the password is used once and never kept)."""
    grant = {}
    if auth.type == AuthKind.OAUTH2_PASSWORD:
        _required(data.secret, ("username", "Username"), ("password", "Password"))
        grant = {"username": data.secret["username"].strip(), "password": data.secret["password"]}
    needed = auth.type == AuthKind.OAUTH2_CLIENT_CREDENTIALS
    return create.create_oauth_connection(
        actor=request.user,
        folder=folder,
        connector=connector,
        auth=auth,
        name=data.name,
        description=data.description,
        fields=data.fields,
        client=_client(data.secret, connector.key, needed=needed),
        **grant,
    ).connection


@folders_router.post(
    "/folders/{int:folder_id}/connections",
    response=answers({201: ConnectionOut}, *WRITE, 503),
    tags=["Connections"],
    summary="Create a connection that needs no browser consent",
    description="PAT, API key and basic credentials are checked against the provider first; "
    "OAuth 2.0 client credentials, or a user name and password (password grant, the password "
    "is never kept), are exchanged for a token. Nothing is stored if that fails.",
)
def create_connection(request: HttpRequest, folder_id: int, data: ConnectionCreate):
    folder, _ = scoped_folder(request, folder_id, Action.CREATE_CONNECTIONS)
    connector = get_catalog().get(data.connector)
    if connector is None:
        raise ValidationError({"connector": [f"No connector {data.connector!r} in the catalog."]})
    auth = connector.auth_type(data.auth_type)
    if auth is None:
        offered = ", ".join(a.type for a in connector.auth_types if a.type in API_CREATABLE)
        raise ValidationError(
            {"auth_type": [f"{connector.name} offers no {data.auth_type!r}; use one of {offered}."]}
        )
    if auth.type not in API_CREATABLE:
        raise ValidationError(
            {
                "auth_type": [
                    f"{auth.display_label} needs the user's consent in a browser: "
                    "add this connection on the portal's pages."
                ]
            }
        )
    if auth.type in DIRECT_GRANTS:
        connection = _direct_grant(request, folder, connector, auth, data)
    else:
        connection = create.create_secret_connection(
            folder=folder,
            connector=connector,
            auth=auth,
            name=data.name,
            description=data.description,
            fields=data.fields,
            secret=data.secret,
            created_by=request.user,
        )
    return Status(201, _out(connection))


@router.patch(
    "/connections/{int:connection_id}",
    response=answers({200: ConnectionOut}, *WRITE, 409, 503),
    summary="Edit name, description, polling interval or fields",
    description="Changed fields are checked with the stored credential first, so changing "
    "them needs Connections - Use as well as Edit.",
)
def edit_connection(request: HttpRequest, connection_id: int, data: ConnectionEdit) -> dict:
    connection = scoped_connection(request, connection_id, Action.EDIT_CONNECTIONS)
    given = data.dict(exclude_unset=True)
    details.edit_connection(
        connection=connection,
        name=given.get("name", connection.name),
        description=given.get("description", connection.description),
        polling_interval_seconds=given.get(
            "polling_interval_seconds", connection.polling_interval_seconds
        ),
        fields=given["fields"] if given.get("fields") is not None else connection.fields,
        actor=request.user,
    )
    return _out(connection)


@router.put(
    "/connections/{int:connection_id}/secret",
    response=answers({200: CheckOut}, *WRITE, 503),
    summary="Replace the secret of a PAT, API key or basic connection",
    description="The new secret is checked first; the old one is kept if the check fails.",
)
def replace_secret(request: HttpRequest, connection_id: int, data: SecretReplace) -> dict:
    connection = scoped_connection(request, connection_id, Action.EDIT_CONNECTIONS)
    if connection.auth_type not in SECRET_AUTH_KINDS:
        raise ValidationError(
            {
                "secret": [
                    "This connection signs in with OAuth 2.0: reconnect it on its page to "
                    "replace its tokens."
                ]
            }
        )
    result = credentials.replace_secret(
        connection=connection, secret=data.secret, actor=request.user
    )
    return _check_out(connection, result)


def _check_out(connection: Connection, result) -> dict:
    return {
        "ok": result.ok,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "error": result.error,
        "state": connection.state,
        "state_label": connection.get_state_display(),
    }


@router.post(
    "/connections/{int:connection_id}/check",
    response=answers({200: CheckOut}, *REFUSALS, 409, 422),
    summary="Run a health check now",
    description="Checks with the stored credential (an OAuth 2.0 token is refreshed first when "
    "it expires soon), records the result and moves the connection's state.",
)
def check_connection(request: HttpRequest, connection_id: int) -> dict:
    connection = scoped_connection(request, connection_id, Action.USE_CONNECTIONS)
    if not connection.is_enabled:
        raise runtime.Unresolved(f"{connection.name} is disabled: enable it first.", status=409)
    result = check.check_connection(connection=connection, actor=request.user)
    return _check_out(connection, result)


def _set_enabled(request: HttpRequest, connection_id: int, enabled: bool) -> dict:
    connection = scoped_connection(request, connection_id, Action.EDIT_CONNECTIONS)
    lifecycle.set_enabled(connection=connection, enabled=enabled, actor=request.user)
    return _out(connection)


@router.post(
    "/connections/{int:connection_id}/disable",
    response=answers({200: ConnectionOut}, *REFUSALS),
    summary="Disable: never used, refreshed or checked",
)
def disable_connection(request: HttpRequest, connection_id: int) -> dict:
    return _set_enabled(request, connection_id, False)


@router.post(
    "/connections/{int:connection_id}/enable",
    response=answers({200: ConnectionOut}, *REFUSALS),
    summary="Enable again",
)
def enable_connection(request: HttpRequest, connection_id: int) -> dict:
    return _set_enabled(request, connection_id, True)


@router.delete(
    "/connections/{int:connection_id}",
    response=answers({204: None}, *REFUSALS, 409, 422),
    summary="Delete a connection and its credential",
    description="A connection that has triggers is refused with 409 naming them (nothing is "
    "deleted) unless delete_triggers=true: then they go with it, with their events and jobs. "
    "Processes that require it stay, with that requirement to choose again.",
)
def delete_connection(
    request: HttpRequest, connection_id: int, query: Query[DeleteConnectionQuery]
):
    connection = scoped_connection(request, connection_id, Action.DELETE_CONNECTIONS)
    try:
        lifecycle.delete_connection(
            connection=connection, actor=request.user, delete_triggers=query.delete_triggers
        )
    except lifecycle.TriggersNotConfirmed as refused:
        raise Conflict(f"{refused} Pass delete_triggers=true to delete them with it.") from None
    return Status(204, None)


@router.put(
    "/connections/{int:connection_id}/default",
    response=answers({200: ConnectionOut}, *REFUSALS),
    summary="Make it the folder's default connection for its connector",
)
def make_default(request: HttpRequest, connection_id: int) -> dict:
    connection = scoped_connection(request, connection_id, Action.EDIT_CONNECTIONS)
    defaults.set_default(connection=connection, actor=request.user)
    return _out(connection)


@router.delete(
    "/connections/{int:connection_id}/default",
    response=answers({200: ConnectionOut}, *REFUSALS),
    summary="Stop being the folder's default connection",
)
def clear_default(request: HttpRequest, connection_id: int) -> dict:
    connection = scoped_connection(request, connection_id, Action.EDIT_CONNECTIONS)
    defaults.clear_default(connection=connection, actor=request.user)
    return _out(connection)
