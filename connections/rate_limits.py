"""Providers' rate limits: a 429 or 503 with Retry-After is honoured.

For the connection that was told (its triggers and its next health check
wait), and, when the connector's limits are per app (``rate_limit: app``,
one quota for every connection on an instance host), for the host: a
``ProviderHold`` row that every batch of the polling engine reads once."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

from django.utils import timezone

from connections.models import ProviderHold

RATE_LIMIT_STATUS = (429, 503)
# Retry-After beyond this is taken as this (a provider's typo must not stop polling for days).
MAX_RETRY_AFTER_SECONDS = 6 * 3600


def retry_after_seconds(value: str | None, now: datetime | None = None) -> int | None:
    """A Retry-After header (seconds, or an HTTP date) in seconds; None when
    absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return min(int(text), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = (moment - (now or timezone.now())).total_seconds()
    return max(0, min(int(seconds) + 1, MAX_RETRY_AFTER_SECONDS))


def limited_for(status: int, headers) -> int | None:
    """Seconds to wait when an answer is a rate limit with Retry-After, else None."""
    if status not in RATE_LIMIT_STATUS:
        return None
    return retry_after_seconds(headers.get("Retry-After"))


def holds_now(now: datetime | None = None) -> dict[str, datetime]:
    """The hosts held now, with when each hold ends."""
    now = now or timezone.now()
    return dict(ProviderHold.objects.filter(until__gt=now).values_list("host", "until"))


def hold_host(host: str, until: datetime, reason: str) -> None:
    """No request to ``host`` before ``until`` (a hold never gets shorter)."""
    host = host.lower()
    held, created = ProviderHold.objects.get_or_create(
        host=host, defaults={"until": until, "reason": reason[:500]}
    )
    if not created and held.until < until:
        ProviderHold.objects.filter(pk=held.pk, until__lt=until).update(
            until=until, reason=reason[:500]
        )
