"""The add-connection wizard: connector, auth type, details, Connect.

Every step asks for Connections - Create in the folder, so a step requested
on its own is refused like the first one. Refused because the tenant's
governance keeps shared folders to administrators, a step says so and leads
to the same step in the user's personal workspace.
"""

from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from connections import oauth
from connections.actions import check, create
from connections.catalog import ConnectorSpec, get_catalog
from connections.catalog.schema import AuthKind
from connections.forms import ConnectForm, add_errors
from connections.oauth_apps import portal_app
from connections.views import oauth_views
from portal.htmx import render_page
from portal.models import Folder
from portal.permissions import Action, GovernanceRefusal, folder_for, folder_permissions
from portal.workspaces import ensure_personal_workspace

BYOA = oauth_views.BYOA


def governance_explained(view):
    """A wizard step refused by governance (not by the user's role) answers
    403 with the reason and a link to the same step in the user's personal
    workspace, instead of the plain refusal."""

    @wraps(view)
    def step(request: HttpRequest, folder_id: int, **kwargs) -> HttpResponse:
        try:
            return view(request, folder_id, **kwargs)
        except GovernanceRefusal as refusal:
            folder = Folder.objects.get(pk=folder_id)
            workspace = ensure_personal_workspace(request.user)
            same_step = reverse(
                request.resolver_match.url_name, kwargs={**kwargs, "folder_id": workspace.pk}
            )
            return render(
                request,
                "connections/wizard_governance.html",
                {
                    "folder": folder,
                    "perms_here": folder_permissions(request.user, folder),
                    "tab": "connections",
                    "reason": str(refusal),
                    "workspace": workspace,
                    "same_step": same_step,
                },
                status=403,
            )

    return step


@dataclass(frozen=True)
class AuthChoice:
    key: str  # the URL segment: an auth type, or "byoa"
    label: str
    available: bool = True
    note: str = ""


def auth_choices(connector: ConnectorSpec) -> list[AuthChoice]:
    """How a connection to this connector can be authenticated, in the
    reference's terms; BYOA only where the authorization code grant is."""
    choices = []
    for auth in connector.auth_types:
        if auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE:
            registered = portal_app(connector.key) is not None
            choices.append(
                AuthChoice(
                    auth.type,
                    auth.display_label,
                    registered,
                    ""
                    if registered
                    else "No app is registered for "
                    f"{connector.name} in this portal yet: bring your own OAuth 2.0 app.",
                )
            )
            if auth.byoa:
                choices.append(AuthChoice(BYOA, "Bring your own OAuth 2.0 app"))
        else:
            choices.append(AuthChoice(auth.type, auth.display_label))
    return choices


def _connector_or_404(key: str) -> ConnectorSpec:
    connector = get_catalog().get(key)
    if connector is None:
        raise Http404("No such connector.")
    return connector


@require_GET
@login_required
@governance_explained
def choose_connector(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.CREATE_CONNECTIONS)
    query = request.GET.get("q", "").strip()
    connectors = get_catalog().search(query)
    return render_page(
        request,
        "connections/wizard_choose_connector.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "connections",
            "connectors": connectors,
            "query": query,
        },
        partials=("connector-list",),
    )


@require_GET
@login_required
@governance_explained
def choose_auth_type(request: HttpRequest, folder_id: int, connector_key: str) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.CREATE_CONNECTIONS)
    connector = _connector_or_404(connector_key)
    choices = auth_choices(connector)
    if len(choices) == 1:
        return redirect("connection_add_details", folder.pk, connector.key, choices[0].key)
    return render(
        request,
        "connections/wizard_choose_auth.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "connections",
            "connector": connector,
            "auth_choices": choices,
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
@governance_explained
def connect(
    request: HttpRequest, folder_id: int, connector_key: str, auth_type: str
) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.CREATE_CONNECTIONS)
    connector = _connector_or_404(connector_key)
    own_app = auth_type == BYOA
    auth = connector.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE if own_app else auth_type)
    if auth is None or (own_app and not auth.byoa):
        raise Http404("No such authentication type for this connector.")
    context = {
        "folder": folder,
        "perms_here": perms,
        "tab": "connections",
        "connector": connector,
        "auth": auth,
        "own_app": own_app,
        "auth_label": "Bring your own OAuth 2.0 app" if own_app else auth.display_label,
        "several_auth_types": len(auth_choices(connector)) > 1,
        "redirect_uri": oauth.redirect_uri(),
    }
    if auth.is_secret_based:
        return _connect_with_secret(request, folder, connector, auth, context)
    return oauth_views.connect_with_oauth(request, folder, connector, auth, own_app, context)


def _connect_with_secret(request, folder, connector, auth, context) -> HttpResponse:
    form = ConnectForm(request.POST or None, connector=connector, auth=auth)
    connect_error = ""
    if request.method == "POST" and form.is_valid():
        try:
            connection = create.create_secret_connection(
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
            add_errors(form, error)
        except check.ConnectError as error:
            connect_error = str(error)
        else:
            who = f" as {connection.account_identity}" if connection.account_identity else ""
            messages.success(request, f"{connection.name} is connected{who}.")
            return redirect("connection_detail", folder.pk, connection.pk)
    return render(
        request,
        "connections/wizard_connect.html",
        {**context, "form": form, "connect_error": connect_error},
        status=400 if request.method == "POST" else 200,
    )
