"""The Sandbox: a tiny API served by the portal itself, so that a newcomer
can create a working connection with no internet access. Tokens are issued
on the Sandbox tokens page and checked by ``GET /sandbox/api/me``."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class Caller:
    """Who calls the Sandbox API: a user (token or OAuth 2.0 user grant) or,
    with the client credentials grant, an application acting for itself."""

    login: str
    email: str = ""
    name: str = ""
    user: object | None = None
    scopes: frozenset[str] = frozenset({"profile", "records.read", "records.write"})


def authenticate(token: str) -> Caller | None:
    """The caller a Sandbox token or a Sandbox OAuth 2.0 access token belongs to."""
    if not token:
        return None
    record = (
        SandboxToken.objects.select_related("user")
        .filter(digest=_digest(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if record is not None:
        SandboxToken.objects.filter(pk=record.pk).update(last_used_at=timezone.now())
        return _user_caller(record.user)
    access = (
        AccessToken.objects.select_related("user", "application")
        .filter(token_checksum=_digest(token))
        .first()
    )
    if access is None or access.is_expired():
        return None
    scopes = frozenset(access.scope.split())
    if access.user is None:
        app = access.application
        return Caller(login=f"app:{app.client_id}", name=app.name, scopes=scopes)
    if not access.user.is_active:
        return None
    return _user_caller(access.user, scopes)


def _user_caller(user, scopes: frozenset[str] | None = None) -> Caller:
    caller = Caller(
        login=user.get_username(),
        email=user.email,
        name=user.get_full_name() or user.get_username(),
        user=user,
    )
    return caller if scopes is None else replace(caller, scopes=scopes)
