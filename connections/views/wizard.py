"""The add-connection wizard: connector, auth type, details, Connect.

Every step asks for Connections - Create in the folder, so a step requested
on its own is refused like the first one.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from connections import actions
from connections.catalog import ConnectorSpec, get_catalog
from connections.catalog.schema import SECRET_AUTH_KINDS
from connections.forms import ConnectForm
from portal.permissions import Action, folder_for

# Auth types the wizard completes today; others are not offered.
SUPPORTED_AUTH_KINDS = set(SECRET_AUTH_KINDS)


def _offered(connector: ConnectorSpec) -> list:
    return [auth for auth in connector.auth_types if auth.type in SUPPORTED_AUTH_KINDS]


def _connector_or_404(key: str) -> ConnectorSpec:
    connector = get_catalog().get(key)
    if connector is None or not _offered(connector):
        raise Http404("No such connector.")
    return connector


@require_GET
@login_required
def choose_connector(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.CREATE_CONNECTIONS)
    query = request.GET.get("q", "").strip()
    connectors = [c for c in get_catalog().search(query) if _offered(c)]
    template = "connections/wizard_choose_connector.html"
    if request.htmx and request.htmx.target == "connector-list":
        template += "#connector-list"
    response = render(
        request,
        template,
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "connections",
            "connectors": connectors,
            "query": query,
        },
    )
    response["Vary"] = "HX-Request"
    return response


@require_GET
@login_required
def choose_auth_type(request: HttpRequest, folder_id: int, connector_key: str) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.CREATE_CONNECTIONS)
    connector = _connector_or_404(connector_key)
    offered = _offered(connector)
    if len(offered) == 1:
        return redirect("connection_add_details", folder.pk, connector.key, offered[0].type)
    return render(
        request,
        "connections/wizard_choose_auth.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "connections",
            "connector": connector,
            "auth_types": offered,
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def connect(
    request: HttpRequest, folder_id: int, connector_key: str, auth_type: str
) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.CREATE_CONNECTIONS)
    connector = _connector_or_404(connector_key)
    auth = connector.auth_type(auth_type)
    if auth is None or auth.type not in SUPPORTED_AUTH_KINDS:
        raise Http404("No such authentication type for this connector.")
    form = ConnectForm(request.POST or None, connector=connector, auth=auth)
    connect_error = ""
    if request.method == "POST" and form.is_valid():
        try:
            connection = actions.create_secret_connection(
                folder=folder,
                connector=connector,
                auth=auth,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                fields=form.definition_values(),
                secret=form.secret_values(),
                created_by=request.user,
            )
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                name = field if field in form.fields else f"field_{field}"
                if name not in form.fields:
                    name = f"secret_{field}" if f"secret_{field}" in form.fields else None
                for problem in problems:
                    form.add_error(name, problem)
        except actions.ConnectError as error:
            connect_error = str(error)
        else:
            who = f" as {connection.account_identity}" if connection.account_identity else ""
            messages.success(request, f"{connection.name} is connected{who}.")
            return redirect("connection_detail", folder.pk, connection.pk)
    return render(
        request,
        "connections/wizard_connect.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "connections",
            "connector": connector,
            "auth": auth,
            "form": form,
            "connect_error": connect_error,
            "several_auth_types": len(_offered(connector)) > 1,
        },
        status=400 if request.method == "POST" else 200,
    )
