"""OAuth 2.0 pages: the wizard's last step for OAuth auth types, the
callback, confirming a changed identity, Reconnect / Authenticate and
rotating a BYOA client secret."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from connections import actions, oauth, vault
from connections.access import connection_for
from connections.catalog import AuthKind, AuthTypeSpec, ConnectorSpec
from connections.forms import (
    ClientCredentialsForm,
    ClientSecretForm,
    OAuthForm,
    PasswordGrantForm,
    add_errors,
)
from connections.models import Connection, OAuthFlow
from connections.oauth_apps import ClientCredentials, portal_app
from portal.models import Folder
from portal.permissions import Action


def _go_to_provider(request: HttpRequest, url: str, connector: ConnectorSpec) -> HttpResponse:
    """Send the browser to the provider. With htmx a client-side redirect (a
    server redirect after a form post is bound by CSP form-action 'self');
    without JavaScript a page with the link."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return render(request, "connections/oauth_continue.html", {"url": url, "connector": connector})


def _client_from(form, own_app: bool, connector: ConnectorSpec) -> ClientCredentials | None:
    if "client_id" in form.cleaned_data:
        # Typed by the user: their own app's credentials, kept (sealed) with
        # the tokens so that refreshing and renewing can use them.
        return ClientCredentials(
            form.cleaned_data["client_id"].strip(),
            form.cleaned_data["client_secret"].strip(),
            own_app=True,
        )
    return portal_app(connector.key)


def connect_with_oauth(
    request: HttpRequest,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    own_app: bool,
    context: dict,
    connection: Connection | None = None,
) -> HttpResponse:
    """The details step for an OAuth 2.0 auth type, for a new connection or
    (with ``connection``) to reconnect an existing one."""
    registered = portal_app(connector.key)
    initial = {}
    if connection is not None:
        initial = {
            "name": connection.name,
            "description": connection.description,
            **{f"field_{k}": v for k, v in connection.fields.items()},
        }
    data = request.POST or None
    if auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE:
        if not own_app and registered is None:
            raise Http404(f"No OAuth app is registered for {connector.name}.")
        form = OAuthForm(data, initial=initial, connector=connector, auth=auth, own_app=own_app)
    elif auth.type == AuthKind.OAUTH2_PASSWORD:
        form = PasswordGrantForm(
            data, initial=initial, connector=connector, auth=auth, needs_client=registered is None
        )
    else:
        form = ClientCredentialsForm(data, initial=initial, connector=connector, auth=auth)
    if connection is not None:
        # Reconnect replaces credentials only; name and description are edited elsewhere.
        del form.fields["name"], form.fields["description"]
    connect_error = ""
    if request.method == "POST" and form.is_valid():
        try:
            if connection is None:
                name = actions.clean_name(folder, form.cleaned_data["name"])
                description = form.cleaned_data["description"]
            else:
                name, description = connection.name, connection.description
            fields = actions.clean_fields(connector, auth, form.definition_values())
            client = _client_from(form, own_app, connector)
            common = {
                "folder": folder,
                "connector": connector,
                "name": name,
                "description": description,
                "fields": fields,
                "connection": connection,
            }
            if auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE:
                scopes = (
                    oauth.split_scopes(form.cleaned_data["scopes"])
                    if own_app
                    else list(auth.oauth2.default_scopes)
                )
                url = oauth.start_authorization(request, client=client, scopes=scopes, **common)
                return _go_to_provider(request, url, connector)
            if auth.type == AuthKind.OAUTH2_PASSWORD:
                outcome = oauth.password_grant(
                    actor=request.user,
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password"],
                    client=client,
                    **common,
                )
            else:
                outcome = oauth.client_credentials_grant(
                    actor=request.user, client=client, **common
                )
        except ValidationError as error:
            add_errors(form, error)
        except oauth.OAuthFlowError as error:
            connect_error = str(error)
        else:
            return _after_outcome(request, outcome)
    return render(
        request,
        "connections/wizard_connect.html",
        {
            **context,
            "form": form,
            "connect_error": connect_error,
            "fixed_scopes": None if own_app else auth.oauth2.default_scopes,
            "known_scopes": auth.oauth2.available_scopes or auth.oauth2.default_scopes,
            "reconnect": connection,
        },
        status=400 if request.method == "POST" else 200,
    )


def _after_outcome(request: HttpRequest, outcome: oauth.Outcome) -> HttpResponse:
    if outcome.flow is not None:
        return redirect("oauth_confirm_identity", outcome.flow.pk)
    connection = outcome.connection
    who = f" as {connection.account_identity}" if connection.account_identity else ""
    messages.success(request, f"{connection.name} is connected{who}.")
    return redirect("connection_detail", connection.folder_id, connection.pk)


@require_GET
@login_required
def callback(request: HttpRequest) -> HttpResponse:
    """Where every provider sends the browser back (one fixed URL)."""
    try:
        outcome = oauth.complete_authorization(request, request.GET)
    except (oauth.OAuthFlowError, ValidationError) as error:
        # ValidationError: the name was taken while the user signed in.
        said = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        response = render(request, "connections/oauth_error.html", {"error": said}, status=400)
    else:
        response = _after_outcome(request, outcome)
    # The query string held a code: never pass it on in a Referer.
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_http_methods(["GET", "POST"])
@login_required
def confirm_identity(request: HttpRequest, flow_id: int) -> HttpResponse:
    flow = get_object_or_404(
        OAuthFlow.objects.select_related("connection", "folder"),
        pk=flow_id,
        user=request.user,
        completed_at__isnull=True,
    )
    if not flow.pending_identity or flow.connection is None:
        raise Http404("Nothing to confirm.")
    connection, _ = connection_for(
        request.user, flow.folder_id, flow.connection_id, Action.EDIT_CONNECTIONS
    )
    if request.method == "POST":
        if request.POST.get("confirm") != "1":
            OAuthFlow.objects.filter(pk=flow.pk).delete()
            messages.info(request, "Nothing changed: the connection keeps its credentials.")
            return redirect("connection_detail", connection.folder_id, connection.pk)
        try:
            oauth.confirm_identity_change(flow=flow, actor=request.user)
        except oauth.OAuthFlowError as error:
            messages.error(request, str(error))
        else:
            messages.success(
                request, f"{connection.name} now authenticates as {flow.pending_identity}."
            )
        return redirect("connection_detail", connection.folder_id, connection.pk)
    return render(
        request,
        "connections/oauth_confirm_identity.html",
        {"flow": flow, "connection": connection, "folder": connection.folder},
    )


@require_http_methods(["GET", "POST"])
@login_required
def reconnect(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    """Reconnect (or first Authenticate) an OAuth 2.0 connection: its auth flow
    again, same connection afterwards."""
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS
    )
    connector = actions.connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    if auth is None or auth.is_secret_based:
        return redirect("connection_replace_secret", folder_id, connection.pk)
    byoa = connection.own_app and auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE
    if byoa and request.method == "POST":
        # BYOA: the user's app as stored with the connection; nothing to type.
        secret = vault.read_secret(connection)
        client = ClientCredentials(secret["client_id"], secret.get("client_secret", ""), True)
        url = oauth.start_authorization(
            request,
            folder=connection.folder,
            connector=connector,
            name=connection.name,
            description=connection.description,
            fields=connection.fields,
            client=client,
            scopes=oauth.split_scopes(secret.get("scope", "")) or list(auth.oauth2.default_scopes),
            connection=connection,
        )
        return _go_to_provider(request, url, connector)
    if byoa:
        return render(
            request,
            "connections/oauth_reconnect_own_app.html",
            {"connection": connection, "folder": connection.folder, "perms_here": perms},
        )
    context = {
        "folder": connection.folder,
        "perms_here": perms,
        "tab": "connections",
        "connector": connector,
        "auth": auth,
        "own_app": False,
        "auth_label": auth.display_label,
        "redirect_uri": oauth.redirect_uri(),
    }
    return connect_with_oauth(
        request, connection.folder, connector, auth, False, context, connection=connection
    )


@require_http_methods(["GET", "POST"])
@login_required
def replace_client_secret(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    """Rotate a BYOA connection's client secret; a reconnect follows."""
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS
    )
    if not connection.own_app:
        raise Http404("Only connections with their own OAuth app have a client secret here.")
    form = ClientSecretForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        actions.replace_client_secret(
            connection=connection,
            client_secret=form.cleaned_data["client_secret"],
            actor=request.user,
        )
        messages.success(
            request, "Client secret replaced. Reconnect now so that the provider confirms it."
        )
        return redirect("connection_reconnect", folder_id, connection.pk)
    return render(
        request,
        "connections/replace_client_secret.html",
        {
            "form": form,
            "connection": connection,
            "folder": connection.folder,
            "perms_here": perms,
            "tab": "connections",
        },
        status=400 if request.method == "POST" else 200,
    )
