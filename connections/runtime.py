"""What automations need at run time: finding a connection the way a job
names it, and a working credential for it.

Permissions are asked of ``portal.permissions`` (the key's folder scope of
``portal.api_keys``) by the callers in ``connections.api``; these functions
say which connection is meant and what it takes to call the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from connections import refresh, vault
from connections.catalog import connector_of
from connections.catalog.schema import OAUTH2_KINDS
from connections.health import credential_transport
from connections.models import Connection, ConnectionState
from connections.unreadable import credential_unreadable
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


# What handing out credentials reads of a connection, its folder and its
# credential (``connections.api.scope.scoped_connection``).
USE_FIELDS = (
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
    "folder__name",
    "folder__kind",
    "folder__owner_id",
    "folder__path",
    "folder__parent_id",
    "credential__ciphertext",
)


def _stored_secret(connection: Connection) -> dict:
    """The secret as loaded with the connection (``USE_FIELDS`` or
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
