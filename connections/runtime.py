"""What automations need at run time: finding a connection the way a job
names it, and a working credential for it.

Permissions are asked of ``portal.permissions`` (the key's folder scope of
``portal.api_keys``) by the callers in ``connections.api``; these functions
say which connection is meant and what it takes to call the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection as db

from connections import refresh, vault
from connections.catalog import connector_of
from connections.catalog.schema import OAUTH2_KINDS
from connections.health import credential_transport
from connections.models import Connection, ConnectionState, Credential
from connections.unreadable import credential_unreadable
from portal import permissions
from portal.models import Folder, FolderGroupGrant, FolderUserGrant

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


# What handing out credentials reads of a connection and of its folder.
USE_FIELDS = (
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
)
USE_FOLDER_FIELDS = ("name", "kind", "owner_id", "path", "parent_id")


@cache
def _for_use_sql() -> str:
    """The portal's one raw SQL statement (DESIGN.md rule 9), on the runtime
    API's hot path: a connection, its folder, its sealed credential and the
    caller's grants on the folder, one row per grant. Through the ORM the
    same read took two queries costing 3.1 ms of CPU in the web process
    (0.9 ms the connection with select_related, 2.2 ms the grants' union of
    four querysets), this statement 0.4 ms; measured by make bench-api in
    one hour on PostgreSQL (2026-12-06, bench/README.md), the credentials
    read answers 0.67-0.70 of /me's requests a second with it and 0.35-0.36
    through the ORM (the goal is 0.7). The subfolder rule is
    ``permissions.within``'s: a grant applies on its folder and below, where
    the granted folder's id stands in the folder's path between slashes;
    ``administer_tenant`` applies everywhere (its rows carry no folder)."""
    user_model = get_user_model()
    user_groups = user_model.groups.through._meta.db_table
    user_permissions = user_model.user_permissions.through._meta.db_table
    group_permissions = Group.permissions.through._meta.db_table
    connection_columns = ", ".join(f"c.{name}" for name in USE_FIELDS)
    folder_columns = ", ".join(f"f.{name} AS folder_{name}" for name in USE_FOLDER_FIELDS)
    # Table names from the models; every value is a parameter.
    return f"""
        SELECT {connection_columns}, {folder_columns},
            cr.ciphertext AS sealed, gr.permission_id AS granted_id
        FROM {Connection._meta.db_table} c
        JOIN {Folder._meta.db_table} f ON f.id = c.folder_id
        LEFT JOIN {Credential._meta.db_table} cr ON cr.connection_id = c.id
        LEFT JOIN (
            SELECT g.content_object_id AS folder_id, g.permission_id
            FROM {FolderUserGrant._meta.db_table} g WHERE g.user_id = %s
            UNION ALL
            SELECT g.content_object_id, g.permission_id
            FROM {FolderGroupGrant._meta.db_table} g
            JOIN {user_groups} ug ON ug.group_id = g.group_id WHERE ug.user_id = %s
            UNION ALL
            SELECT NULL, x.permission_id FROM {user_permissions} x
            WHERE x.user_id = %s AND x.permission_id = %s
            UNION ALL
            SELECT NULL, x.permission_id FROM {group_permissions} x
            JOIN {user_groups} ug ON ug.group_id = x.group_id
            WHERE ug.user_id = %s AND x.permission_id = %s
        ) gr ON gr.folder_id IS NULL
            OR f.path LIKE '%%/' || CAST(gr.folder_id AS TEXT) || '/%%'
        WHERE c.id = %s
    """  # noqa: S608 (table names from the models; values are parameters)


def connection_for_use(connection_id: int, user) -> tuple[Connection | None, frozenset[str]]:
    """The connection (``USE_FIELDS``) with its folder (``USE_FOLDER_FIELDS``)
    and its sealed credential, and what ``user`` was granted on the folder
    (``permissions.folder_permissions``'s ``granted``), in one statement;
    (None, empty) if there is no such connection."""
    low, high = db.ops.integer_field_range(Connection._meta.pk.get_internal_type())
    if not low <= connection_id <= high:  # a path may carry any integer
        return None, frozenset()
    admin = permissions.tenant_admin_permission_id()
    params = [user.pk, user.pk, user.pk, admin, user.pk, admin, connection_id]
    # One instance a row (one row a grant), the model's fields converted as
    # the ORM converts them; the folder's columns, the ciphertext and the
    # grant are extra attributes of each.
    rows = list(Connection.objects.raw(_for_use_sql(), params))
    if not rows:
        return None, frozenset()
    connection = rows[0]
    read = {"id": connection.folder_id}
    read.update((name, getattr(connection, f"folder_{name}")) for name in USE_FOLDER_FIELDS)
    # In the model's field order, as from_db expects.
    names = [f.attname for f in Folder._meta.concrete_fields if f.attname in read]
    connection.folder = Folder.from_db(db.alias, names, [read[name] for name in names])
    if connection.sealed is not None:
        connection.credential = Credential.from_db(
            db.alias, ("connection_id", "ciphertext"), (connection.pk, connection.sealed)
        )
    granted = permissions.codenames({row.granted_id for row in rows if row.granted_id is not None})
    return connection, granted


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
