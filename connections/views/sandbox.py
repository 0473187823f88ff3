"""Sandbox tokens and Sandbox apps pages, and the Sandbox API itself."""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
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
    """The caller's records, newest first (GET, records.read; a query narrows,
    orders and pages them: RecordListing), or a new one (POST {"title": ...},
    records.write): something for triggers to poll."""
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
    if not LISTING_PARAMETERS.intersection(request.GET):
        records = sandbox.latest_records(caller.user)
        return JsonResponse({"records": [_record(r) for r in records]})
    try:
        listing = RecordListing.from_query(request.GET)
    except ValueError as error:
        return JsonResponse(
            {"error": "invalid_request", "error_description": str(error)}, status=400
        )
    records = listing.page(caller.user.sandbox_records.all())
    answer: dict = {"records": [_record(r) for r in records[: listing.limit]]}
    if len(records) > listing.limit:
        answer["next_page_token"] = _page_token(records[listing.limit - 1])
    return JsonResponse(answer)


def _record(record) -> dict:
    return {"id": record.pk, "title": record.title, "created_at": record.created_at.isoformat()}


LISTING_PARAMETERS = {"since", "q", "order", "limit", "page_token"}


@dataclass(frozen=True)
class RecordListing:
    """GET /sandbox/api/records with a query, for polling as a real API is
    polled: ``since`` (ISO 8601: records created at or after it), ``q`` (the
    title contains it, any case), ``order`` (``desc``, newest first, the
    default, or ``asc``), ``limit`` (1 to 100, default 100) and ``page_token``
    (the ``next_page_token`` of the previous page, which an answer carries
    when more records follow). Pages are cut at (created_at, id), so records
    added while a client pages never shift a page. Without any of these the
    answer is the newest hundred, as it always was."""

    since: datetime | None
    title: str
    ascending: bool
    limit: int
    after: tuple[datetime, int] | None

    @classmethod
    def from_query(cls, query) -> RecordListing:
        since = None
        if query.get("since"):
            since = _moment(query["since"])
            if since is None:
                raise ValueError(
                    "since must be an ISO 8601 date and time, like 2026-05-02T10:31:05Z."
                )
        order = query.get("order") or "desc"
        if order not in {"asc", "desc"}:
            raise ValueError("order must be asc or desc.")
        limit_text = query.get("limit") or str(sandbox.RECORDS_LISTED)
        limit = int(limit_text) if limit_text.isdigit() else 0
        if not 1 <= limit <= sandbox.RECORDS_LISTED:
            raise ValueError(f"limit must be a whole number from 1 to {sandbox.RECORDS_LISTED}.")
        after = None
        if query.get("page_token"):
            after = _read_page_token(query["page_token"])
            if after is None:
                raise ValueError("page_token is not one this API gave.")
        return cls(since, (query.get("q") or "").strip(), order == "asc", limit, after)

    def page(self, records: QuerySet) -> list:
        """The page's records, and the first of the next page when there is one."""
        if self.since is not None:
            records = records.filter(created_at__gte=self.since)
        if self.title:
            records = records.filter(title__icontains=self.title)
        if self.after is not None:
            created, pk = self.after
            if self.ascending:
                records = records.filter(
                    Q(created_at__gt=created) | Q(created_at=created, pk__gt=pk)
                )
            else:
                records = records.filter(
                    Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk)
                )
        order = ("created_at", "pk") if self.ascending else ("-created_at", "-pk")
        return list(records.order_by(*order)[: self.limit + 1])


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _page_token(record) -> str:
    raw = f"{record.created_at.isoformat()}|{record.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _read_page_token(token: str) -> tuple[datetime, int] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, pk = raw.split("|")
        moment = _moment(created)
        return (moment, int(pk)) if moment else None
    except (ValueError, UnicodeDecodeError):
        return None
