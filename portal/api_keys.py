"""API keys: issuing, verifying and revoking them, and robot accounts.

A key is ``cpk_`` followed by 43 random url-safe characters (256 bits). Only
its SHA-256 digest is stored (a plain digest suffices for a random key of
that length: there is nothing to guess), so verifying one is a single lookup
on a unique index. The key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import audit
from portal.models import ApiKey, AuditRecord, Folder, RobotAccount
from portal.permissions import Action, can

PREFIX = "cpk_"
HINT_LENGTH = 8
ROBOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,39}$")


class ApiKeyRefused(Exception):
    """The key does not authenticate; the message says why, for the caller."""


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str  # shown once, never stored


def clean_key_name(user, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the key a name, e.g. the automation that uses it."]})
    if len(name) > 80:
        raise ValidationError({"name": ["The name is longer than 80 characters."]})
    active = ApiKey.objects.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
    if active.filter(user=user, name__iexact=name).exists():
        raise ValidationError({"name": [f"An active key named {name!r} already exists."]})
    return name


def clean_expiry(days) -> datetime:
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise ValidationError({"days": ["Enter the key's lifetime in days."]}) from None
    longest = settings.PORTAL_API_KEY_MAX_DAYS
    if not 1 <= days <= longest:
        raise ValidationError({"days": [f"A key lives between 1 and {longest} days."]})
    return timezone.now() + timedelta(days=days)


def clean_scope(owner, folder: Folder | None) -> Folder | None:
    """A key may be limited to a folder its user can see."""
    if folder is not None and not can(owner, Action.VIEW_FOLDER, folder):
        raise ValidationError(
            {"folder": [f"{owner.get_username()} cannot see the folder {folder.name}."]}
        )
    return folder


def issue(
    *,
    owner,
    name: str,
    days=None,
    folder: Folder | None = None,
    actor,
    ip: str | None = None,
) -> IssuedKey:
    """Make a key for ``owner``; the caller checks
    ``portal.permissions.may_manage_keys_of`` first.
    Keys of one owner are made one at a time (the owner's row is locked), so
    that two requests cannot both find a name free."""
    raw = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values("pk"))
        name = clean_key_name(owner, name)
        expires_at = clean_expiry(settings.PORTAL_API_KEY_DAYS if days in (None, "") else days)
        folder = clean_scope(owner, folder)
        key = ApiKey.objects.create(
            user=owner,
            name=name,
            digest=digest(raw),
            hint=raw[len(PREFIX) : len(PREFIX) + HINT_LENGTH],
            folder=folder,
            expires_at=expires_at,
            created_by=actor,
        )
        audit.record(
            AuditRecord.Action.API_KEY_CREATED,
            actor=actor,
            target=("api_key", key.pk, f"{key.name} of {owner.get_username()}"),
            ip=ip,
        )
    return IssuedKey(key=key, raw=raw)


def revoke(key: ApiKey, *, actor, ip: str | None = None) -> None:
    if key.revoked_at:
        return
    with transaction.atomic():
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db(fields=["revoked_at"])
        audit.record(
            AuditRecord.Action.API_KEY_REVOKED,
            actor=actor,
            target=("api_key", key.pk, f"{key.name} of {key.user.get_username()}"),
            ip=ip,
        )


def authenticate(raw: str, *, ip: str | None = None) -> ApiKey:
    """The active key ``raw`` names, with its user (and the user's robot
    account) and its folder: one query on a unique index, and a write at
    most once a minute per key to record its last use."""
    if not raw or not raw.startswith(PREFIX):
        raise ApiKeyRefused("Send an API key: Authorization: Bearer cpk_…")
    try:
        key = ApiKey.objects.select_related("user", "user__robot", "folder").get(digest=digest(raw))
    except ApiKey.DoesNotExist:
        raise ApiKeyRefused("This API key is not valid.") from None
    now = timezone.now()
    if key.revoked_at:
        raise ApiKeyRefused("This API key has been revoked.")
    if key.expires_at <= now:
        raise ApiKeyRefused("This API key has expired; make a new one.")
    if not key.user.is_active:
        raise ApiKeyRefused("The account of this API key is deactivated.")
    stale = now - timedelta(seconds=settings.PORTAL_API_KEY_TOUCH_SECONDS)
    if key.last_used_at is None or key.last_used_at < stale or key.last_used_ip != ip:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=ip)
        key.last_used_at, key.last_used_ip = now, ip
    return key


def in_scope(key: ApiKey, folder: Folder) -> bool:
    """Whether a folder-scoped key may act in ``folder`` (an unscoped key may
    act wherever its user may)."""
    return key.folder_id is None or folder.path.startswith(key.folder.path)


# --- Robot accounts ------------------------------------------------------


def clean_robot_name(name: str) -> str:
    name = (name or "").strip().lower()
    if not ROBOT_NAME.match(name):
        raise ValidationError(
            {
                "name": [
                    "Use 2 to 40 lower-case letters, digits, dots, dashes or underscores, "
                    "starting with a letter or digit."
                ]
            }
        )
    if get_user_model().objects.filter(username__iexact=name).exists():
        raise _name_taken(name)
    return name


def _name_taken(name: str) -> ValidationError:
    return ValidationError({"name": [f"The name {name!r} is taken."]})


def create_robot(*, name: str, description: str, actor, ip: str | None = None) -> RobotAccount:
    """A robot account: a user with no usable password, that never signs in
    to the pages; give it roles on folders and API keys."""
    name = clean_robot_name(name)
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=name, password=None)
            robot = RobotAccount.objects.create(
                user=user, description=(description or "").strip()[:500], created_by=actor
            )
            audit.record(
                AuditRecord.Action.ROBOT_CREATED,
                actor=actor,
                target=("user", user.pk, name),
                ip=ip,
            )
    except IntegrityError:
        # Taken between the check and the INSERT (the username's unique index).
        raise _name_taken(name) from None
    return robot
