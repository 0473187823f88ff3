"""What automations need at run time: finding a connection the way a job
names it, and a working credential for it.

Permissions are asked of ``portal.permissions`` (the key's folder scope of
``portal.api_keys``) by the callers in ``connections.api``; these functions
say which connection is meant and what it takes to call the provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from django.db import connection as db

from connections import refresh, vault
from connections.catalog import connector_of
from connections.catalog.schema import OAUTH2_KINDS
from connections.health import credential_transport
from connections.models import Connection, ConnectionState, Credential
from connections.unreadable import credential_unreadable
from portal import api_keys, permissions, statements
from portal.models import Folder

# How an automation names its own personal workspace in a folder path.
PERSONAL_WORKSPACE_NAMES = ("~", "My Workspace")


class Unresolved(Exception):
    """No single connection answers; ``status`` is 404 (none) or 409 (several,
    or one that cannot be used as it is)."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.status = status


def folder_by_path(user, path: str) -> Folder:
    """The folder a path of names leads to: ``Finance/Accounts payable`` from
    the top-level shared folders, ``~`` (or ``My Workspace``) for the
    caller's personal workspace. Visibility is the caller's to check."""
    names = [part.strip() for part in (path or "").strip("/").split("/") if part.strip()]
    if not names:
        raise Unresolved("Name a folder path, e.g. Finance/Accounts payable.")
    if names[0] in PERSONAL_WORKSPACE_NAMES and len(names) == 1:
        folder = Folder.objects.filter(owner=user).first()
        if folder is None:
            raise Unresolved("You have no personal workspace.")
        return folder
    folder = None
    for depth, name in enumerate(names):
        query = (
            Folder.objects.filter(parent__isnull=True, kind=Folder.Kind.SHARED)
            if folder is None
            else Folder.objects.filter(parent=folder)
        )
        folder = query.filter(name__iexact=name).first()
        if folder is None:
            walked = "/".join(names[: depth + 1])
            raise Unresolved(f"No folder {walked!r}.")
    return folder


def connection_in_folder(folder: Folder, connector_key: str, name: str | None = None) -> Connection:
    """The connection of ``connector_key`` named ``name`` in the folder, or,
    with no name, the folder's default connection for the connector (its only
    one, when it has one). Never a silent pick: several candidates and no
    default answer 409."""
    candidates = Connection.objects.select_related("folder").filter(
        folder=folder, connector_key=connector_key
    )
    if name:
        try:
            return candidates.get(name__iexact=name.strip())
        except Connection.DoesNotExist:
            raise Unresolved(
                f"No {connector_key} connection named {name.strip()!r} in {folder.name}."
            ) from None
    default = candidates.filter(is_default=True).first()
    if default is not None:
        return default
    only = list(candidates[:2])
    if len(only) == 1:
        return only[0]  # the folder's one connection of the connector: nothing to choose
    if not only:
        raise Unresolved(f"No {connector_key} connection in {folder.name}.")
    count = candidates.count()
    raise Unresolved(
        f"{folder.name} has {count} {connector_key} connections and none is the default: "
        "name one, or mark one as the default for the folder.",
        status=409,
    )


@dataclass(frozen=True)
class Credentials:
    """What a client needs to call the provider with a connection."""

    kind: str  # "oauth2_access_token" or the auth type (pat, api_key, basic)
    secret: dict[str, str]
    expires_at: datetime | None
    api_base_url: str
    headers: dict[str, str]
    query: dict[str, str]
    fields: dict[str, str]


# What handing out credentials reads of a connection and its folder.
FOR_USE = statements.Columns(
    Connection,
    (
        "id",
        "folder_id",
        "name",
        "connector_key",
        "auth_type",
        "fields",
        "state",
        "is_enabled",
        "token_expires_at",
        "token_lifetime_seconds",
        "secret_expires_at",
    ),
    "c",
)
FOR_USE_FOLDER = statements.Columns(
    Folder, ("id", "name", "kind", "owner_id", "path", "parent_id"), "f"
)


@cache
def _for_use_parts(user: str = "%s") -> tuple[str, str]:
    """What reading a connection to use it selects: its columns, its
    folder's, its sealed credential and the caller's grants on the folder
    (``user``: the SQL of the caller's id); and the joins after the
    connection's table (``c``)."""
    credential = statements.column(Credential, "connection")
    path = "f." + statements.column(Folder, "path")
    select = (
        f"{FOR_USE.select()}, {FOR_USE_FOLDER.select()}, "
        f"cr.{statements.column(Credential, 'ciphertext')}, "
        f"{permissions.granted_ids(path, user=user)}"
    )
    joins = (
        f"LEFT JOIN {statements.table(Folder)} f ON f.{statements.column(Folder, 'id')} = "
        f"c.{statements.column(Connection, 'folder')} "
        f"LEFT JOIN {statements.table(Credential)} cr ON cr.{credential} = "
        f"c.{statements.column(Connection, 'id')} "
    )
    return select, joins


@cache
def _for_use_sql() -> str:
    """One statement for a connection, its folder, its credential and the
    caller's grants on the folder: the credentials endpoint is the runtime
    API's hot path, where every round trip to the database shows."""
    select, joins = _for_use_parts()
    return (
        f"SELECT {select} FROM {statements.table(Connection)} c {joins}"  # noqa: S608 (statements)
        f"WHERE c.{statements.column(Connection, 'id')} = %s"
    )


ForUse = tuple[Connection | None, frozenset[str] | None]


def _for_use_from(row: Sequence | None) -> ForUse:
    """The row's columns: the connection's, its folder's, the ciphertext, and
    the permission ids granted; the connection's are NULL (or there is no
    row) when there is no such connection."""
    if row is None or row[0] is None:
        return None, None
    folder_ends = len(FOR_USE) + len(FOR_USE_FOLDER)
    connection = FOR_USE.build(row[: len(FOR_USE)])
    connection.folder = FOR_USE_FOLDER.build(row[len(FOR_USE) : folder_ends])
    connection.attach_credential(row[folder_ends])
    return connection, permissions.codenames(row[folder_ends + 1])


def _row_id(connection_id: int) -> int | None:
    """The id as a statement's parameter: None, which matches no row, for an
    id beyond what the column holds (a path may carry any integer)."""
    low, high = db.ops.integer_field_range(Connection._meta.pk.get_internal_type())
    return connection_id if low <= connection_id <= high else None


def connection_for_use(connection_id: int, user) -> ForUse:
    """The connection with its folder and its credential (sealed), and what
    ``user`` was granted on the folder (``permissions.folder_permissions``'s
    ``granted``), in one statement; (None, None) if there is no such
    connection. Only ``FOR_USE``'s fields are loaded."""
    with db.cursor() as cursor:
        cursor.execute(
            _for_use_sql(), [*permissions.grants_params(user.pk), _row_id(connection_id)]
        )
        return _for_use_from(cursor.fetchone())


@cache
def _along_sql() -> tuple[str, str]:
    select, joins = _for_use_parts(user=api_keys.key_user_sql())
    return ", " + select, (
        f"LEFT JOIN {statements.table(Connection)} c "
        f"ON c.{statements.column(Connection, 'id')} = %s {joins}"
    )


def for_use_along(connection_id: int) -> api_keys.Along:
    """``connection_for_use`` in the statement that verifies the caller's API
    key (``api_keys.authenticate_along``): the caller is the key's user, so
    a credentials read costs one round trip fewer. Its result is used only
    once the key is known to be active."""
    select, joins = _along_sql()
    return api_keys.Along(
        select=select,
        joins=joins,
        params=[*permissions.grants_params(None), _row_id(connection_id)],
        build=_for_use_from,
    )


def _stored_secret(connection: Connection) -> dict:
    """The secret as loaded with the connection (``connection_for_use`` or
    ``select_related("credential")`` save a query on the hot path), or read now."""
    return vault.open_credential(connection.credential)


def _opened(connection: Connection) -> dict:
    """The stored secret; for OAuth 2.0 the token set, refreshed first
    through the single-flight path when it expires within the lead time (the
    refresh opens it too). ``CredentialUnreadable`` when it cannot be opened."""
    try:
        if connection.auth_type in OAUTH2_KINDS and not refresh.is_fresh(connection):
            return refresh.refresh_connection(connection.pk)
        return _stored_secret(connection)
    except vault.VaultError as error:
        raise credential_unreadable(connection, error) from None


def credentials_for(connection: Connection) -> Credentials:
    """A working credential: for OAuth 2.0 a valid access token, refreshed
    first through the single-flight path when it expires within the lead
    time; for a PAT, API key or basic credential the secret itself.

    Raises Unresolved(409) for a connection that cannot be used as it is,
    ``refresh.RefreshError`` when a due refresh fails, and
    ``CredentialUnreadable`` when the stored secret cannot be opened (the
    connection is then marked Misconfigured)."""
    if not connection.is_enabled:
        raise Unresolved(f"{connection.name} is disabled: enable it to use it.", status=409)
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        raise Unresolved(
            f"{connection.name} needs reconnecting: someone who may edit it must reconnect it "
            "on its page first.",
            status=409,
        )
    if connection.state == ConnectionState.NOT_CONNECTED:
        raise Unresolved(
            f"{connection.name} is not connected yet: someone who may edit it must connect it "
            "on its page first.",
            status=409,
        )
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    if connection.auth_type in OAUTH2_KINDS:
        token = _opened(connection)
        secret = {"access_token": token["access_token"], "token_type": "Bearer"}
        kind = "oauth2_access_token"
        expires_at = (
            datetime.fromtimestamp(token["expires_at"], tz=UTC) if token.get("expires_at") else None
        )
    else:
        secret = _opened(connection)
        kind = connection.auth_type
        expires_at = connection.secret_expires_at
    fields = dict(connection.fields)
    headers, query = credential_transport(auth, fields, secret)
    return Credentials(
        kind=kind,
        secret=secret,
        expires_at=expires_at,
        api_base_url=connector.api_base(fields, connection.auth_type),
        headers={**connector.headers, **headers},
        query=query,
        fields=fields,
    )
