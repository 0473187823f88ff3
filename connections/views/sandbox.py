"""Sandbox tokens page and the Sandbox API itself."""

import functools
import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections import sandbox
from connections.models import SandboxRecord

NEW_TOKEN_KEY = "sandbox_new_token"  # noqa: S105 (a session key name)


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
            "tokens": request.user.sandbox_tokens.filter(revoked_at__isnull=True),
            "new_token": new_token,
        },
    )


@require_POST
@login_required
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    _require_enabled()
    token = get_object_or_404(request.user.sandbox_tokens, pk=token_id, revoked_at__isnull=True)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    messages.success(request, f"Token {token} revoked.")
    return redirect("sandbox_tokens")


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
        record = SandboxRecord.objects.create(user=caller.user, title=title[:200])
        return JsonResponse(_record(record), status=201)
    records = SandboxRecord.objects.filter(user=caller.user).order_by("-created_at", "-pk")[:100]
    return JsonResponse({"records": [_record(r) for r in records]})


def _record(record) -> dict:
    return {"id": record.pk, "title": record.title, "created_at": record.created_at.isoformat()}
