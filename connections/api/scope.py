"""The API's way to the folder or connection a request names: the user's
permissions (``portal.permissions``, as on the pages) narrowed by the API
key's folder scope. Out of scope answers like invisible: 404."""

from __future__ import annotations

from functools import partial

from django.http import Http404, HttpRequest

from connections.access import connection_by_id
from connections.models import Connection
from connections.runtime import connection_for_use
from portal.api_keys import in_scope
from portal.models import Folder
from portal.permissions import (
    Action,
    require,
    require_connections_visible,
    require_on_connection,
)


def scoped_folder(request: HttpRequest, folder_id: int, action: Action) -> tuple[Folder, frozenset]:
    folder = Folder.objects.filter(pk=folder_id).first()
    if folder is None or not in_scope(request.auth, folder):
        raise Http404("No such folder.")
    return folder, require(request.user, action, folder)


def scoped_connection(
    request: HttpRequest,
    connection_id: int,
    action: Action,
    *,
    related: tuple[str, ...] = (),
    for_use: bool = False,
) -> Connection:
    """``for_use``: loaded for handing out credentials (with its sealed
    credential and the caller's grants, only the columns that needs:
    ``runtime.connection_for_use``)."""
    try:
        connection, _ = connection_by_id(
            request.user,
            connection_id,
            action,
            related=related,
            within=partial(in_scope, request.auth),
            load=connection_for_use if for_use else None,
        )
    except Http404:
        # A connection in a folder out of sight answers as one that does not
        # exist ("No such folder." would tell that the id is taken).
        raise Http404("No such connection.") from None
    return connection


def scoped_in(
    request: HttpRequest,
    folder: Folder,
    action: Action,
    *,
    missing: str,
    of_connection: bool = False,
) -> frozenset:
    """The caller's permissions in ``folder``, where a process, trigger or
    job the request names lives: 404 (``missing``, as for an id that does not
    exist) when the folder is out of sight or out of the key's scope (or,
    ``of_connection``, the connection is: no Connections - View), 403 naming
    the permission when ``action`` is not allowed."""
    if not in_scope(request.auth, folder):
        raise Http404(missing)
    try:
        perms = require(request.user, Action.VIEW_FOLDER, folder)
        if of_connection:
            require_connections_visible(perms)
    except Http404:
        raise Http404(missing) from None
    if action != Action.VIEW_FOLDER:
        require_on_connection(perms, action)  # 403 naming the permission
    return perms
