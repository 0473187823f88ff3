"""The Connections tab of a folder: search, filter, sort, paginate."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from connections import oauth, status
from connections.catalog import get_catalog
from connections.models import Connection, ConnectionState
from connections.views.oauth_views import abandoned_flows
from portal.htmx import render_page, requested_partial
from portal.permissions import Action, folder_for, withheld_by_governance
from portal.workspaces import ensure_personal_workspace

PAGE_SIZE = 50
# What the filters swap in as one types.
PARTIALS = ("connection-table",)
SORTS = {
    "name": ("name", "pk"),
    "-name": ("-name", "-pk"),
    "updated": ("updated_at", "pk"),
    "-updated": ("-updated_at", "-pk"),
    "connector": ("connector_key", "name", "pk"),
    "state": ("state", "name", "pk"),
}


@require_GET
@login_required
def folder_connections(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.VIEW_CONNECTIONS)
    catalog = get_catalog()
    query = request.GET.get("q", "").strip()
    connector = request.GET.get("connector", "")
    state = request.GET.get("state", "")
    sort = request.GET.get("sort", "name")
    if sort not in SORTS:
        sort = "name"

    connections = Connection.objects.in_folder(folder).select_related("authenticated_by")
    if query:
        connections = connections.filter(
            Q(name__icontains=query) | Q(account_identity__icontains=query)
        )
    if connector:
        connections = connections.filter(connector_key=connector)
    connections = status.with_status(connections, state)
    page = Paginator(connections.order_by(*SORTS[sort]), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    for connection in page.object_list:
        connection.connector = catalog.get(connection.connector_key)

    filtered = bool(query or connector or state)
    # The table alone (the filters' swap) shows no notices: skip their queries.
    notices = {} if requested_partial(request, PARTIALS) else _notices(request, folder, perms)
    return render_page(
        request,
        "connections/list.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "connections",
            "page": page,
            "query": query,
            "connector_filter": connector,
            "state_filter": state,
            "sort": sort,
            "filtered": filtered,
            "connectors": catalog.all(),
            "states": ConnectionState.choices,
            **notices,
        },
        partials=PARTIALS,
    )


def _notices(request: HttpRequest, folder, perms: frozenset[str]) -> dict:
    """What the folder page tells the user above the list: their sign-ins
    here that never came back (one query), and, where governance keeps them
    from adding connections here, why and where they can (asked only then)."""
    notices = {
        "abandoned_flows": abandoned_flows(request.user, folder),
        "to_authenticate": _to_authenticate(folder, perms),
    }
    if notices["abandoned_flows"]:
        notices["redirect_uri"] = oauth.redirect_uri()
    if "create_connections" not in perms and withheld_by_governance(request.user, folder):
        notices["personal_workspace"] = ensure_personal_workspace(request.user)
    return notices


TO_AUTHENTICATE_SHOWN = 20


def _to_authenticate(folder, perms: frozenset[str]) -> list[Connection]:
    """The folder's connections still waiting to be authenticated (Not yet
    connected: made by a solution's deployment or an import; one query),
    each with where to authenticate it: its secret typed on its page, or its
    OAuth 2.0 sign-in (Connections - Edit; otherwise its page)."""
    waiting = list(
        Connection.objects.in_folder(folder)
        .filter(state=ConnectionState.NOT_CONNECTED, is_enabled=True)
        .order_by("name", "pk")[:TO_AUTHENTICATE_SHOWN]
    )
    catalog = get_catalog()
    for connection in waiting:
        connector = catalog.get(connection.connector_key)
        auth = connector.auth_type(connection.auth_type) if connector else None
        args = [folder.pk, connection.pk]
        name = "connection_detail"
        if "edit_connections" in perms and auth is not None:
            name = "connection_reconnect" if auth.oauth2 else "connection_replace_secret"
        connection.authenticate_url = reverse(name, args=args)
    return waiting
