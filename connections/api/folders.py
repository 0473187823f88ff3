"""Folders the caller may see, and the connections in one."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Schema

from connections.api.schemas import (
    ConnectionOut,
    ConnectionPage,
    FolderPage,
    Text,
    answers,
    page_of,
)
from connections.api.scope import scoped_folder
from connections.models import Connection
from portal.folder_tree import folder_name_paths
from portal.permissions import Action, visible_folders

router = Router()


class PageQuery(Schema):
    page: int = 1
    page_size: int = 50


class ConnectionFilter(PageQuery):
    connector: Text | None = None
    state: Text | None = None


@router.get("/folders", response=answers({200: FolderPage}, 422), summary="Folders you may see")
def list_folders(request: HttpRequest, query: Query[PageQuery]) -> dict:
    folders = visible_folders(request.user)
    if request.auth.folder_id:
        folders = folders.filter(path__startswith=request.auth.folder.path)
    items, counts = page_of(folders.order_by("path"), query.page, query.page_size)
    paths = folder_name_paths(items, separator="/")
    return {
        "items": [
            {
                "id": folder.pk,
                "name": folder.name,
                "kind": folder.kind,
                "parent_id": folder.parent_id,
                "path": paths[folder.pk],
            }
            for folder in items
        ],
        **counts,
    }


@router.get(
    "/folders/{int:folder_id}/connections",
    response=answers({200: ConnectionPage}, 403, 404, 422),
    summary="Connections in a folder",
)
def list_connections(request: HttpRequest, folder_id: int, query: Query[ConnectionFilter]) -> dict:
    folder, _ = scoped_folder(request, folder_id, Action.VIEW_CONNECTIONS)
    connections = (
        Connection.objects.visible_to(request.user)
        .filter(folder=folder)
        .select_related("authenticated_by")
    )
    if query.connector:
        connections = connections.filter(connector_key=query.connector)
    if query.state:
        connections = connections.filter(state=query.state)
    items, counts = page_of(connections.order_by("name", "pk"), query.page, query.page_size)
    return {"items": [ConnectionOut.of(connection) for connection in items], **counts}
