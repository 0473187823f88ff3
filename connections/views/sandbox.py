"""Sandbox tokens and Sandbox apps pages, and the Sandbox API itself."""

import functools
import json
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections import sandbox, sandbox_provider

NEW_TOKEN_KEY = "sandbox_new_token"  # noqa: S105 (a session key name)
NEW_APP_KEY = "sandbox_new_app"


def _require_enabled() -> None:
    if not settings.PORTAL_SANDBOX_ENABLED:
        raise Http404("The Sandbox is not enabled.")


def only_when_enabled(view):
    """The Sandbox authorization server answers 404 unless the Sandbox is on."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        _require_enabled()
        return view(request, *args, **kwargs)

    return wrapped


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    _require_enabled()
    if request.method == "POST":
        _, token = sandbox.issue_token(user=request.user, name=request.POST.get("name", ""))
        # Shown once, on the page after the redirect (a refresh makes no new token).
        request.session[NEW_TOKEN_KEY] = token
        return redirect("sandbox_tokens")
    new_token = request.session.pop(NEW_TOKEN_KEY, None)
    return render(
        request,
        "connections/sandbox_tokens.html",
        {
            "tokens": sandbox.active_tokens(request.user),
            "new_token": new_token,
        },
    )


@require_POST
@login_required
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    _require_enabled()
    token = get_object_or_404(sandbox.active_tokens(request.user), pk=token_id)
    sandbox.revoke_token(token)
    messages.success(request, f"Token {token} revoked.")
    return redirect("sandbox_tokens")


@only_when_enabled
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def apps(request: HttpRequest) -> HttpResponse:
    """Register an OAuth 2.0 app on the Sandbox authorization server (its
    secret shown once, after the redirect), list and delete one's apps."""
    name, error = "", None
    if request.method == "POST":
        name = request.POST.get("name", "")
        try:
            registered = sandbox_provider.register_user_app(user=request.user, name=name)
        except sandbox_provider.AppRegistrationError as refused:
            error = refused
        else:
            app = registered.application
            # Shown once, on the page after the redirect (a refresh shows it no more).
            request.session[NEW_APP_KEY] = {"id": app.pk, "secret": registered.client_secret}
            return redirect("sandbox_apps")
    new_app = _pop_new_app(request)
    user_apps = list(sandbox_provider.user_apps(request.user))
    return render(
        request,
        "connections/sandbox_apps.html",
        {
            "apps": [{"app": app, "uri_parts": _url_parts(app.redirect_uris)} for app in user_apps],
            "new_app": new_app,
            "name": name if error else "",
            "error": error,
            "redirect_uri": sandbox_provider.callback_url(),
            "name_max_length": sandbox_provider.APP_NAME_MAX_LENGTH,
            "apps_per_user": sandbox_provider.APPS_PER_USER,
            "at_limit": len(user_apps) >= sandbox_provider.APPS_PER_USER,
        },
        status=400 if error else 200,
    )


def _url_parts(url: str) -> list[str]:
    """A URL cut after each "/" that ends a segment, so a table cell may wrap
    it there (the page puts <wbr> between the parts)."""
    return re.split(r"(?<=/)(?=[^/])", url)


def _pop_new_app(request: HttpRequest) -> dict | None:
    shown = request.session.pop(NEW_APP_KEY, None)
    if not shown:
        return None
    app = sandbox_provider.user_apps(request.user).filter(pk=shown.get("id")).first()
    return {"app": app, "client_secret": shown.get("secret", "")} if app else None


@only_when_enabled
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def delete_app(request: HttpRequest, app_id: int) -> HttpResponse:
    """Ask, then delete one of one's own Sandbox apps (another's: 404)."""
    app = get_object_or_404(sandbox_provider.user_apps(request.user), pk=app_id)
    if request.method == "POST":
        name = app.name
        sandbox_provider.delete_user_app(app)
        messages.success(request, f"App {name} deleted.")
        return redirect("sandbox_apps")
    return render(request, "connections/sandbox_app_confirm_delete.html", {"app": app})


def _caller_or_401(request: HttpRequest, scope: str):
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    caller = sandbox.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if caller is None:
        response = JsonResponse(
            {"error": "invalid_token", "error_description": "The access token is not valid."},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return None, response
    if scope not in caller.scopes:
        response = JsonResponse(
            {
                "error": "insufficient_scope",
                "error_description": f"The access token lacks the {scope} scope.",
            },
            status=403,
        )
        response["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'
        return None, response
    return caller, None


@csrf_exempt
@require_GET
def api_me(request: HttpRequest) -> HttpResponse:
    """Who am I: the Sandbox API's identity endpoint."""
    _require_enabled()
    caller, refused = _caller_or_401(request, "profile")
    if refused:
        return refused
    return JsonResponse({"login": caller.login, "email": caller.email, "name": caller.name})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def api_records(request: HttpRequest) -> HttpResponse:
    """The caller's records, newest first (GET, records.read), or a new one
    (POST {"title": ...}, records.write): something for triggers to poll."""
    _require_enabled()
    needed = "records.write" if request.method == "POST" else "records.read"
    caller, refused = _caller_or_401(request, needed)
    if refused:
        return refused
    if caller.user is None:
        return JsonResponse({"records": []})
    if request.method == "POST":
        try:
            title = str(json.loads(request.body or b"{}").get("title", "")).strip()
        except (ValueError, AttributeError):
            title = ""
        if not title:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "Give the record a title."},
                status=400,
            )
        record = sandbox.add_record(user=caller.user, title=title)
        return JsonResponse(_record(record), status=201)
    records = sandbox.latest_records(caller.user)
    return JsonResponse({"records": [_record(r) for r in records]})


def _record(record) -> dict:
    return {"id": record.pk, "title": record.title, "created_at": record.created_at.isoformat()}
