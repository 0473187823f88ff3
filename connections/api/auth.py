"""API key authentication and its rate limits: per user (a user's keys
share one budget) and, for refused keys, per client address. Sessions never
authenticate the API: a signed-in browser without a key gets 401."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from ninja.security.http import HttpAuthBase

from portal import api_keys, audit
from portal.client_ip import client_ip
from portal.models import ApiKey


class RateLimited(Exception):
    def __init__(self, retry_after: int, message: str = ""):
        self.retry_after = max(1, retry_after)
        super().__init__(
            message
            or f"Too many requests with this account's API keys; try again in {self.retry_after} s."
        )


def _owner_of(group: str, request: HttpRequest) -> str:
    # One budget per user, whichever of their keys is sent: more keys buy no
    # more requests.
    return str(request.auth.user_id)


def enforce_rate_limit(request: HttpRequest) -> None:
    usage = get_usage(
        request,
        group="api-user",
        key=_owner_of,
        rate=settings.PORTAL_API_RATE_LIMIT,
        increment=True,
    )
    if usage is not None and usage["should_limit"]:
        raise RateLimited(usage["time_left"])


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate(text: str) -> tuple[int, int]:
    """``"30/m"``, ``"100/5m"``: (count, period in seconds)."""
    count, _, per = text.partition("/")
    multiple = per[:-1] or "1"
    return int(count), int(multiple) * _PERIODS[per[-1:].lower()]


class RefusedAttempts:
    """Refused keys per client address (``portal.client_ip``), in fixed
    windows in the cache: ``PORTAL_API_REFUSED_RATE_LIMIT``. Asking whether
    an address is limited is one cache read and no database query, so a
    flood of bad keys costs the database nothing once limited."""

    def __init__(self, request: HttpRequest):
        self.limit, period = _rate(settings.PORTAL_API_REFUSED_RATE_LIMIT)
        now = time.time()
        window = int(now // period)
        self.retry_after = max(1, int((window + 1) * period - now))
        self.ttl = period + 2
        address = client_ip(request) or "unknown"
        self.key = f"portal:api-refused:{period}:{window}:{address}"

    def error(self) -> RateLimited:
        return RateLimited(
            self.retry_after,
            f"Too many refused API keys from this address; try again in {self.retry_after} s.",
        )

    def check(self) -> None:
        if (cache.get(self.key) or 0) >= self.limit:
            raise self.error()

    def count(self) -> None:
        cache.add(self.key, 0, self.ttl)
        try:
            refused = cache.incr(self.key)
        except ValueError:  # expired between the two calls
            refused = 1
            cache.add(self.key, refused, self.ttl)
        if refused > self.limit:
            raise self.error()


class ApiKeyAuth(HttpAuthBase):
    """``Authorization: Bearer cpk_…``. The authenticated key is
    ``request.auth`` and its user ``request.user``."""

    openapi_scheme = "bearer"

    def __call__(self, request: HttpRequest) -> ApiKey:
        refused = RefusedAttempts(request)
        refused.check()
        try:
            key = self._verified(request)
        except api_keys.ApiKeyRefused:
            refused.count()
            raise
        request.auth = key
        request.user = key.user
        audit.bind(api_key=key)
        enforce_rate_limit(request)
        return key

    def _verified(self, request: HttpRequest) -> ApiKey:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            # Never log or echo what was sent: it may be a key with a typo.
            raise api_keys.ApiKeyRefused("Send an API key: Authorization: Bearer cpk_…")
        return api_keys.authenticate(raw.strip(), ip=client_ip(request) or None)
