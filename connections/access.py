"""Finding a connection for a user: every connection page goes through here,
and here asks ``portal.permissions``."""

from collections.abc import Callable

from django.http import Http404

from connections.models import Connection
from portal.models import Folder
from portal.permissions import (
    Action,
    folder_for,
    require,
    require_connections_visible,
    require_on_connection,
)


def connection_for(user, folder_id: int, connection_id: int, action: Action):
    """The connection and the user's permissions in its folder.

    404 when the folder or the connection is invisible to the user (no
    Connections - View), 403 when visible but the action is not allowed.
    """
    folder, perms = folder_for(user, folder_id, Action.VIEW_FOLDER)
    require_connections_visible(perms)
    try:
        connection = Connection.objects.select_related(
            "folder", "created_by", "authenticated_by"
        ).get(pk=connection_id, folder=folder)
    except Connection.DoesNotExist:
        raise Http404("No such connection.") from None
    require_on_connection(perms, action)
    return connection, perms


def connection_by_id(
    user,
    connection_id: int,
    action: Action,
    *,
    related: tuple[str, ...] = (),
    within: Callable[[Folder], bool] | None = None,
    load: Callable[[int, object], tuple[Connection | None, frozenset[str]]] | None = None,
):
    """``connection_for`` when only the connection's id is known (the API):
    the connection and its folder (and ``related``) in one query, the same
    answers. A folder that ``within`` refuses (an API key's scope) answers
    as invisible. ``load`` reads the connection with its folder and the
    user's grants on the folder another way (``runtime.connection_for_use``
    on the credentials path, one statement)."""
    granted = None
    if load is not None:
        connection, granted = load(connection_id, user)
    else:
        connection = (
            Connection.objects.select_related("folder", *related).filter(pk=connection_id).first()
        )
    if connection is None:
        raise Http404("No such connection.")
    if within is not None and not within(connection.folder):
        raise Http404("No such connection.")
    perms = require(user, Action.VIEW_FOLDER, connection.folder, granted=granted)
    require_connections_visible(perms)
    require_on_connection(perms, action)
    return connection, perms
