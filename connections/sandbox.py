"""The Sandbox: a tiny API served by the portal itself, so that a newcomer
can create a working connection with no internet access. Tokens are issued
on the Sandbox tokens page and checked by ``GET /sandbox/api/me``."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace

from django.db.models import QuerySet
from django.utils import timezone
from oauth2_provider.models import AccessToken

from connections.models import SandboxRecord, SandboxToken

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


def active_tokens(user) -> QuerySet[SandboxToken]:
    """The user's tokens that the Sandbox API still accepts."""
    return SandboxToken.objects.filter(user=user, revoked_at__isnull=True)


def revoke_token(token: SandboxToken) -> None:
    """From now on the Sandbox API refuses the token."""
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


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


# --- Records: something for triggers to poll ------------------------------------

RECORD_TITLE_MAX_LENGTH = 200
RECORDS_LISTED = 100


def add_record(*, user, title: str) -> SandboxRecord:
    """A new record of the user's, its title cut to what the column holds."""
    return SandboxRecord.objects.create(user=user, title=title[:RECORD_TITLE_MAX_LENGTH])


def latest_records(user) -> QuerySet[SandboxRecord]:
    """The user's latest records, newest first."""
    return SandboxRecord.objects.filter(user=user).order_by("-created_at", "-pk")[:RECORDS_LISTED]
