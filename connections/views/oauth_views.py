"""OAuth 2.0 pages: the wizard's last step for OAuth auth types, the
callback, confirming a changed identity, Reconnect / Authenticate and
rotating a BYOA client secret."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from connections import oauth, refresh, troubleshooting, unreadable, validation
from connections.access import connection_for
from connections.actions import create, credentials, oauth_connections
from connections.catalog import AuthKind, AuthTypeSpec, ConnectorSpec, connector_of, get_catalog
from connections.forms import (
    ClientCredentialsForm,
    ClientSecretForm,
    OAuthForm,
    PasswordGrantForm,
    add_errors,
)
from connections.models import Connection, Credential, OAuthFlow
from connections.oauth_apps import ClientCredentials, portal_app
from portal.htmx import render_page, vary_on_htmx
from portal.models import Folder
from portal.permissions import Action

BYOA = "byoa"  # the wizard's URL segment for "Bring your own OAuth 2.0 app"
# Session: the id of a failed flow -> the message its sign-in ended with,
# shown again above the form that "Try again" opens (a few kept, newest last).
RETRY_ERRORS = "oauth_retry_errors"
RETRY_ERRORS_KEPT = 5
# A sign-in started longer ago than this and never answered is told on the
# folder page: the provider kept the browser (an unknown redirect URI).
ABANDONED_AFTER = timedelta(minutes=1)
SIGNED_OUT = (
    "You are not signed in to the portal any more (the session ended while you were "
    "signing in at the provider), so this answer was not used and nothing was stored. "
    "Sign in, then start the connection again."
)


# --- Going on after a sign-in failed or never came back -----------------------


def retry_url(flow: OAuthFlow) -> str:
    """Where "Try again" / "Start again" leads: the add-connection details
    form of the flow's folder, connector and auth type, filled from the flow
    (or, for a reconnect, the connection's Reconnect page)."""
    if flow.connection_id:
        url = reverse("connection_reconnect", args=[flow.folder_id, flow.connection_id])
    else:
        auth_key = BYOA if flow.own_app else flow.auth_type
        url = reverse("connection_add_details", args=[flow.folder_id, flow.connector_key, auth_key])
    return f"{url}?retry={flow.pk}"


def _remember_error(request: HttpRequest, flow: OAuthFlow, message: str) -> None:
    kept = {k: v for k, v in request.session.get(RETRY_ERRORS, {}).items() if k != str(flow.pk)}
    kept[str(flow.pk)] = message
    request.session[RETRY_ERRORS] = dict(list(kept.items())[-RETRY_ERRORS_KEPT:])


def _forget_error(request: HttpRequest, flow: OAuthFlow) -> None:
    kept = request.session.get(RETRY_ERRORS, {})
    if str(flow.pk) in kept:
        request.session[RETRY_ERRORS] = {k: v for k, v in kept.items() if k != str(flow.pk)}


def retry_flow(
    request: HttpRequest,
    *,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    own_app: bool,
    connection: Connection | None = None,
) -> OAuthFlow | None:
    """The user's own unfinished flow named by ``?retry=`` for this very
    form (folder, connector, auth type, own app or not, connection): what a
    form is filled from. Anyone else's, or a finished one, is ignored."""
    flow_id = request.GET.get("retry", "")
    if not flow_id.isdigit() or auth.type != AuthKind.OAUTH2_AUTHORIZATION_CODE:
        return None
    return OAuthFlow.objects.filter(
        pk=int(flow_id),
        user=request.user,
        folder=folder,
        connector_key=connector.key,
        auth_type=auth.type,
        own_app=own_app,
        connection=connection,
        completed_at__isnull=True,
        pending_identity="",
    ).first()


def retry_error(request: HttpRequest, flow: OAuthFlow, connector: ConnectorSpec) -> str:
    """The message shown above the form filled from ``flow``: how its
    sign-in ended, or, when it never came back, the likely cause."""
    said = request.session.get(RETRY_ERRORS, {}).get(str(flow.pk))
    if said:
        return said
    if flow.used_at is None:
        return never_came_back(flow, connector)
    return "The last sign-in did not finish. Check the details and connect again."


def never_came_back(flow: OAuthFlow, connector: ConnectorSpec | None) -> str:
    """Why a started sign-in may not have come back, what to do, and the
    redirect URI to register."""
    name = connector.name if connector else flow.connector_key
    return (
        f"The sign-in at {name} did not come back to the portal. "
        f"{_likely_cause(flow, name)} {oauth.redirect_uri()}"
    )


def _likely_cause(flow: OAuthFlow, name: str) -> str:
    if flow.own_app:
        return (
            f"The likely cause: your app at {name} does not list the portal's redirect URI. "
            "Register exactly this redirect URI in the app, then start again:"
        )
    return (
        f"The likely cause: the portal's app at {name} does not list the portal's redirect "
        "URI. Ask an administrator to register exactly this redirect URI in it:"
    )


def abandoned_flows(user, folder: Folder) -> list[OAuthFlow]:
    """The user's sign-ins in this folder that were started a while ago and
    never came back, not expired (one query); each with ``connector``,
    ``explanation`` (the likely cause; the redirect URI follows it on the
    page) and ``retry_url``."""
    now = timezone.now()
    flows = list(
        OAuthFlow.objects.filter(
            user=user,
            folder=folder,
            used_at__isnull=True,
            completed_at__isnull=True,
            created_at__lte=now - ABANDONED_AFTER,
            expires_at__gt=now,
        ).order_by("-created_at", "-pk")[:5]
    )
    catalog = get_catalog()
    for flow in flows:
        flow.connector = catalog.get(flow.connector_key)
        name = flow.connector.name if flow.connector else flow.connector_key
        flow.explanation = _likely_cause(flow, name)
        flow.retry_url = retry_url(flow)
    return flows


@require_POST
@login_required
def cancel_flow(request: HttpRequest, flow_id: int) -> HttpResponse:
    """Cancel one of the user's own unfinished sign-ins: the flow is deleted."""
    flow = get_object_or_404(OAuthFlow, pk=flow_id, user=request.user, completed_at__isnull=True)
    OAuthFlow.objects.filter(pk=flow.pk, completed_at__isnull=True).delete()
    _forget_error(request, flow)
    messages.info(request, f"The sign-in for {flow.name} was cancelled; nothing was stored.")
    return redirect("folder_connections", flow.folder_id)


def _go_to_provider(request: HttpRequest, url: str, connector: ConnectorSpec) -> HttpResponse:
    """Send the browser to the provider. With htmx a client-side redirect (a
    server redirect after a form post is bound by CSP form-action 'self');
    without JavaScript a page with the link."""
    if request.htmx:
        return vary_on_htmx(HttpResponseClientRedirect(url))
    return vary_on_htmx(
        render(request, "connections/oauth_continue.html", {"url": url, "connector": connector})
    )


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
    (with ``connection``) to reconnect an existing one. With ``?retry=`` the
    user's failed flow fills the form (never its client secret) and its
    error stands above it; the flow is deleted once a new sign-in starts."""
    registered = portal_app(connector.key)
    retry = retry_flow(
        request,
        folder=folder,
        connector=connector,
        auth=auth,
        own_app=own_app,
        connection=connection,
    )
    initial = {}
    if connection is not None:
        initial = {
            "name": connection.name,
            "description": connection.description,
            **{f"field_{k}": v for k, v in connection.fields.items()},
        }
    elif retry is not None:
        initial = {
            "name": retry.name,
            "description": retry.description,
            **{f"field_{k}": v for k, v in retry.fields.items()},
        }
    if retry is not None and own_app:
        initial.update(client_id=retry.client_id, scopes=" ".join(retry.scopes))
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
    if retry is not None and request.method != "POST":
        connect_error = retry_error(request, retry, connector)
    if request.method == "POST" and form.is_valid():
        try:
            client = _client_from(form, own_app, connector)
            if auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE:
                url = _start_sign_in(
                    request, form, folder, connector, auth, own_app, client, connection
                )
                _retried(request, retry)
                return _go_to_provider(request, url, connector)
            grant = {
                "actor": request.user,
                "connector": connector,
                "auth": auth,
                "fields": form.definition_values(),
                "client": client,
                "username": form.cleaned_data.get("username", ""),
                "password": form.cleaned_data.get("password", ""),
            }
            if connection is None:
                outcome = create.create_oauth_connection(
                    folder=folder,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    **grant,
                )
            else:
                outcome = oauth_connections.reconnect_with_grant(connection=connection, **grant)
        except ValidationError as error:
            add_errors(form, error)
        except oauth.OAuthFlowError as error:
            connect_error = str(error)
        else:
            return _after_outcome(request, outcome)
    return render_page(
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
        # The authorization code form is posted by htmx; a refusal redraws it.
        partials=("connect-panel",),
        status=400 if request.method == "POST" else 200,
    )


def _start_sign_in(
    request: HttpRequest,
    form,
    folder: Folder,
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    own_app: bool,
    client: ClientCredentials,
    connection: Connection | None,
) -> str:
    """Record the authorization code flow; the URL to send the browser to."""
    if connection is None:
        name = validation.clean_name(folder, form.cleaned_data["name"])
        description = form.cleaned_data["description"]
    else:
        name, description = connection.name, connection.description
    return oauth.start_authorization(
        request,
        folder=folder,
        connector=connector,
        name=name,
        description=description,
        fields=validation.clean_fields(connector, auth, form.definition_values()),
        client=client,
        scopes=(
            oauth.split_scopes(form.cleaned_data["scopes"])
            if own_app
            else list(auth.oauth2.default_scopes)
        ),
        connection=connection,
    )


def _retried(request: HttpRequest, flow: OAuthFlow | None) -> None:
    """A new sign-in began from a failed one: the old flow has served."""
    if flow is not None:
        OAuthFlow.objects.filter(pk=flow.pk, completed_at__isnull=True).delete()
        _forget_error(request, flow)


def _after_outcome(request: HttpRequest, outcome: oauth_connections.Outcome) -> HttpResponse:
    if outcome.flow is not None:
        return redirect("oauth_confirm_identity", outcome.flow.pk)
    connection = outcome.connection
    who = f" as {connection.account_identity}" if connection.account_identity else ""
    messages.success(request, f"{connection.name} is connected{who}.")
    return redirect("connection_detail", connection.folder_id, connection.pk)


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Where every provider sends the browser back (one fixed URL).

    Not behind ``login_required``: its redirect to the login page would copy
    the code and state into the ``next`` URL. Signed out, the answer is
    refused with a page (the flow is bound to the session that began it,
    which is gone) and nothing is spent."""
    if not request.user.is_authenticated:
        response = render(
            request,
            "connections/oauth_error.html",
            {"error": SIGNED_OUT, "signed_out": True},
            status=400,
        )
    else:
        response = _complete(request)
    # The query string held a code: never pass it on in a Referer, never keep it.
    response["Referrer-Policy"] = "no-referrer"
    add_never_cache_headers(response)
    return response


def _complete(request: HttpRequest) -> HttpResponse:
    outcome = oauth_connections.complete_authorization(request, request.GET)
    if not outcome.error:
        return _after_outcome(request, outcome)
    flow, retry = outcome.failed_flow, outcome.retry_flow
    if retry is not None:
        _remember_error(request, retry, outcome.error)
    return render(
        request,
        "connections/oauth_error.html",
        {
            "error": outcome.error,
            "trouble_anchor": troubleshooting.error_kind(
                state="", error=outcome.error, status_code=outcome.status_code
            ),
            "retry_url": retry_url(retry) if retry is not None else None,
            "retry_own_app": bool(flow and flow.own_app),
            "folder_id": flow.folder_id if flow else None,
        },
        status=400,
    )


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
            oauth_connections.confirm_identity_change(flow=flow, actor=request.user)
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
        {
            "flow": flow,
            "connection": connection,
            "folder": connection.folder,
            "triggers_warning": oauth_connections.identity_change_warning(
                connection, flow.pending_identity
            ),
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def reconnect(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    """Reconnect (or first Authenticate) an OAuth 2.0 connection: its auth flow
    again, same connection afterwards."""
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.EDIT_CONNECTIONS
    )
    connector = connector_of(connection)
    auth = connector.auth_type(connection.auth_type)
    if auth is None or auth.is_secret_based:
        return redirect("connection_replace_secret", folder_id, connection.pk)
    byoa = connection.own_app and auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE
    if byoa and not Credential.objects.filter(pk=connection.pk).exists():
        # Its own app was never stored here (an imported connection): the
        # user brings it, as in the wizard, and signs in.
        context = {
            "folder": connection.folder,
            "perms_here": perms,
            "tab": "connections",
            "connector": connector,
            "auth": auth,
            "own_app": True,
            "auth_label": "Bring your own OAuth 2.0 app",
            "redirect_uri": oauth.redirect_uri(),
        }
        return connect_with_oauth(
            request, connection.folder, connector, auth, True, context, connection=connection
        )
    if byoa and request.method == "POST":
        retry = retry_flow(
            request,
            folder=connection.folder,
            connector=connector,
            auth=auth,
            own_app=True,
            connection=connection,
        )
        # BYOA: the user's app as stored with the connection; nothing to type.
        try:
            secret = unreadable.read_for_use(connection)
            client = ClientCredentials(secret["client_id"], secret.get("client_secret", ""), True)
            stored_scopes = oauth.split_scopes(secret.get("scope", ""))
            url = oauth.start_authorization(
                request,
                folder=connection.folder,
                connector=connector,
                name=connection.name,
                description=connection.description,
                fields=connection.fields,
                client=client,
                scopes=stored_scopes or list(auth.oauth2.default_scopes),
                connection=connection,
            )
        except (unreadable.CredentialUnreadable, oauth.OAuthFlowError) as error:
            # Nothing to sign in with, or the stored app or scopes no longer
            # do (e.g. the connector now requires another scope): say so.
            messages.error(request, str(error))
            detail = reverse("connection_detail", args=[folder_id, connection.pk])
            if request.htmx:  # htmx would follow a plain redirect and swap the page in
                return vary_on_htmx(HttpResponseClientRedirect(detail))
            return vary_on_htmx(redirect(detail))
        _retried(request, retry)
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
        try:
            credentials.replace_client_secret(
                connection=connection,
                client_secret=form.cleaned_data["client_secret"],
                actor=request.user,
            )
        except (unreadable.CredentialUnreadable, refresh.LeaseTimeout) as error:
            form.add_error(None, str(error))
        else:
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
