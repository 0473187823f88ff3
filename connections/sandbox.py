"""The Sandbox: a tiny API served by the portal itself, so that a newcomer
can create a working connection with no internet access. Tokens are issued
on the Sandbox tokens page and checked by ``GET /sandbox/api/me``."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone
from oauth2_provider.models import AccessToken

from connections.models import SandboxToken

TOKEN_PREFIX = "sbx_"  # noqa: S105 (a prefix, not a secret)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(*, user, name: str) -> tuple[SandboxToken, str]:
    """Create a token; the plain value is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    record = SandboxToken.objects.create(
        user=user, name=name.strip() or "Sandbox token", digest=_digest(token), hint=token[-4:]
    )
    return record, token


def authenticate(token: str):
    """The user a Sandbox token or a Sandbox OAuth 2.0 access token (with the
    profile scope) belongs to, or None."""
    if not token:
        return None
    record = (
        SandboxToken.objects.select_related("user")
        .filter(digest=_digest(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if record is not None:
        SandboxToken.objects.filter(pk=record.pk).update(last_used_at=timezone.now())
        return record.user
    access = (
        AccessToken.objects.select_related("user")
        .filter(token_checksum=_digest(token), user__is_active=True)
        .first()
    )
    if access is not None and access.is_valid(["profile"]):
        return access.user
    return None
