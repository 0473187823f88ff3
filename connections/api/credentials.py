"""Run time: which connection a job means, and working credentials for it.
The credentials endpoint is the one place a stored secret leaves the
portal; every read is audited."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from ninja import Query, Router, Schema

from connections.api.schemas import ConnectionOut, CredentialsOut, Text, answers
from connections.api.scope import scoped_connection, scoped_folder
from connections.models import Connection
from connections.runtime import (
    Unresolved,
    connection_in_folder,
    credentials_for,
    folder_by_path,
)
from portal import audit
from portal.api_keys import in_scope
from portal.client_ip import client_ip
from portal.models import AuditRecord
from portal.permissions import Action, require

router = Router()

# A connection named by folder, connector and name: 400 when not named
# enough, 422 for a parameter of the wrong shape, 409 for several and no
# default (or one that cannot be used).
NAMED = (400, 403, 404, 409, 422)


class ConnectionName(Schema):
    """A connection by id, or by folder (path or id) + connector + name, or
    the folder's default connection for a connector (no name)."""

    id: int | None = None
    folder: Text | None = None
    folder_id: int | None = None
    connector: Text | None = None
    name: Text | None = None


def resolve(request: HttpRequest, named: ConnectionName, action: Action) -> Connection:
    # Handing out credentials, or the connection's details.
    how = (
        {"for_use": True}
        if action == Action.USE_CONNECTIONS
        else {"related": ("authenticated_by",)}
    )
    if named.id is not None:
        return scoped_connection(request, named.id, action, **how)
    if not named.connector or (not named.folder and named.folder_id is None):
        raise Unresolved(
            "Name the connection: id, or folder (or folder_id) and connector, with name "
            "unless the folder's default connection is meant.",
            status=400,
        )
    if named.folder_id is not None:
        folder, _ = scoped_folder(request, named.folder_id, Action.VIEW_CONNECTIONS)
    else:
        try:
            folder = folder_by_path(request.user, named.folder)
        except Unresolved:
            folder = None
        # Not there, out of the key's scope or out of sight: one answer, naming
        # the path as asked, so that a path cannot probe which folders exist.
        if folder is None or not in_scope(request.auth, folder):
            raise Http404(f"No folder {named.folder!r}.")
        try:
            require(request.user, Action.VIEW_CONNECTIONS, folder)
        except Http404:
            raise Http404(f"No folder {named.folder!r}.") from None
    found = connection_in_folder(folder, named.connector, named.name)
    # The same checks as by id (and the related rows the action needs).
    return scoped_connection(request, found.pk, action, **how)


@router.get(
    "/connections/resolve",
    response=answers({200: ConnectionOut}, *NAMED),
    summary="Find the connection a job names",
)
def resolve_connection(request: HttpRequest, named: Query[ConnectionName]) -> dict:
    return ConnectionOut.of(resolve(request, named, Action.VIEW_CONNECTIONS))


def _credentials(request: HttpRequest, connection: Connection, response: HttpResponse) -> dict:
    credentials = credentials_for(connection)
    audit.record(
        AuditRecord.Action.CREDENTIALS_READ,
        actor=request.user,
        api_key=request.auth,
        folder=connection.folder,
        target=("connection", connection.pk, connection.name),
        job_id=request.headers.get(settings.PORTAL_API_JOB_HEADER, ""),
        ip=client_ip(request) or None,
        detail=f"{credentials.kind} of {connection.connector_key}",
    )
    response["Cache-Control"] = "no-store"
    return {
        "connection_id": connection.pk,
        "connector": connection.connector_key,
        "type": credentials.kind,
        "secret": credentials.secret,
        "expires_at": credentials.expires_at,
        "api_base_url": credentials.api_base_url,
        "instance_url": credentials.fields.get("instance_url"),
        "headers": credentials.headers,
        "query": credentials.query,
        "fields": credentials.fields,
    }


# 409: disabled, needs reconnecting, a refused refresh, an unreadable
# credential; 422: its connector left the catalog; 503: a transient refresh
# failure, or the vault's keys unusable.
CREDENTIALS_BY_ID = answers({200: CredentialsOut}, 403, 404, 409, 422, 503)


@router.get(
    "/connections/{int:connection_id}/credentials",
    response=CREDENTIALS_BY_ID,
    summary="Working credentials of a connection",
    description="A valid access token (refreshed first when it expires soon), or the stored "
    "secret of a PAT, API key or basic connection, with what a client needs to call the "
    "provider. Needs Connections - Use. Every read is audited; send the job's id in "
    "the X-Job-Id header.",
)
def connection_credentials(
    request: HttpRequest, connection_id: int, response: HttpResponse
) -> dict:
    connection = scoped_connection(request, connection_id, Action.USE_CONNECTIONS, for_use=True)
    return _credentials(request, connection, response)


@router.get(
    "/credentials",
    response=answers({200: CredentialsOut}, *NAMED, 503),
    summary="Working credentials of the connection a job names",
    description="As /connections/{id}/credentials, the connection named by id, by folder "
    "and connector and name, or the folder's default for the connector.",
)
def named_credentials(
    request: HttpRequest, named: Query[ConnectionName], response: HttpResponse
) -> dict:
    return _credentials(request, resolve(request, named, Action.USE_CONNECTIONS), response)
