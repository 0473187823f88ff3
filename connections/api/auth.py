"""API key authentication and the per-key rate limit. Sessions never
authenticate the API: a signed-in browser without a key gets 401."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from ninja.security.http import HttpAuthBase

from portal import api_keys
from portal.client_ip import client_ip
from portal.models import ApiKey


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__("Too many requests with this API key.")
        self.retry_after = max(1, retry_after)


def _key_of(group: str, request: HttpRequest) -> str:
    return str(request.auth.pk)


def enforce_rate_limit(request: HttpRequest) -> None:
    usage = get_usage(
        request,
        group="api",
        key=_key_of,
        rate=settings.PORTAL_API_RATE_LIMIT,
        increment=True,
    )
    if usage is not None and usage["should_limit"]:
        raise RateLimited(usage["time_left"])


class ApiKeyAuth(HttpAuthBase):
    """``Authorization: Bearer cpk_…``. The authenticated key is
    ``request.auth`` and its user ``request.user``.

    ``along(request)``: a read for the operation to ride on the key's
    statement (``api_keys.Along``); what it found is ``request.along``."""

    openapi_scheme = "bearer"

    def __init__(self, along: Callable[[HttpRequest], api_keys.Along] | None = None):
        super().__init__()
        self.along = along

    def __call__(self, request: HttpRequest) -> ApiKey:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            # Never log or echo what was sent: it may be a key with a typo.
            raise api_keys.ApiKeyRefused("Send an API key: Authorization: Bearer cpk_…")
        ip = client_ip(request) or None
        if self.along is None:
            key = api_keys.authenticate(raw.strip(), ip=ip)
        else:
            key, request.along = api_keys.authenticate_along(
                raw.strip(), self.along(request), ip=ip
            )
        request.auth = key
        request.user = key.user
        enforce_rate_limit(request)
        return key
