"""Sandbox tokens page and the Sandbox API itself."""

import functools

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


@csrf_exempt
@require_GET
def api_me(request: HttpRequest) -> HttpResponse:
    _require_enabled()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    user = sandbox.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        response = JsonResponse(
            {"error": "invalid_token", "error_description": "The access token is not valid."},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    return JsonResponse(
        {
            "login": user.get_username(),
            "email": user.email,
            "name": user.get_full_name() or user.get_username(),
        }
    )
