"""Input cleaning shared by the pages, the API and the actions: connection
fields, secrets, names and polling intervals, each refused with a message
naming what is wrong (a ``ValidationError`` by field)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError
from django.db import IntegrityError

from connections import egress
from connections.catalog import AuthTypeSpec, ConnectorSpec
from connections.health import MAX_POLLING_SECONDS, egress_policy, tenant_min_polling_seconds
from connections.models import Connection
from portal.models import Folder


def clean_fields(connector: ConnectorSpec, auth: AuthTypeSpec, raw: dict) -> dict[str, str]:
    """Validated connection fields, or ValidationError naming each bad field."""
    cleaned, errors = {}, {}
    for spec in (*connector.fields, *auth.fields):
        try:
            cleaned[spec.key] = spec.clean(raw.get(spec.key))
            if spec.type == "url" and cleaned[spec.key]:
                # Say early and plainly when an address is private, loopback or
                # metadata; the connect-time check of the resolved address still applies.
                egress.check_url(cleaned[spec.key], egress_policy(connector))
        except ValidationError as error:
            errors[spec.key] = error.messages
        except egress.EgressDenied as error:
            errors[spec.key] = [str(error)]
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_secret(auth: AuthTypeSpec, raw: dict) -> dict[str, str]:
    """The auth type's secrets, trimmed. Each is required, and none may hold
    a line break or another control character (a tab aside): secrets travel
    in request headers, where a line break would start another header."""
    cleaned, errors = {}, {}
    for spec in auth.secrets:
        value = (raw.get(spec.key) or "").strip()
        if not value:
            errors[spec.key] = [f"{spec.label} is required."]
        elif any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            errors[spec.key] = [
                f"{spec.label} must not contain line breaks or other control characters."
            ]
        cleaned[spec.key] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


# The messages of the checks below; the pages' forms say the same.
NAME_MAX_LENGTH = 120
NAME_REQUIRED = "Give the connection a name."
NAME_TOO_LONG = f"The name is longer than {NAME_MAX_LENGTH} characters."
POLLING_NOT_A_NUMBER = "Enter the polling interval in seconds."


def _name_taken(folder: Folder, name: str) -> ValidationError:
    return ValidationError(
        {"name": [f"A connection named {name!r} already exists in {folder.name}."]}
    )


def clean_name(folder: Folder, name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": [NAME_REQUIRED]})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError({"name": [NAME_TOO_LONG]})
    clash = Connection.objects.filter(folder=folder, name__iexact=name)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise _name_taken(folder, name)
    return name


@contextmanager
def name_kept(folder: Folder, name: str) -> Iterator[None]:
    """Around the transaction that saves a connection under ``name``
    (``clean_name`` found it free): when another request took the name in
    between, the database refuses the row, and the caller gets the same
    message as if it had asked after the other (nothing is saved)."""
    try:
        yield
    except IntegrityError:
        if Connection.objects.filter(folder=folder, name=name).exists():
            raise _name_taken(folder, name) from None
        raise


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} seconds"


def clean_polling_interval(value, *, minimum: int | None = None) -> int:
    """Seconds between checks, at least the tenant-wide minimum, at most a day."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValidationError({"polling_interval_seconds": [POLLING_NOT_A_NUMBER]}) from None
    minimum = tenant_min_polling_seconds() if minimum is None else minimum
    if seconds < minimum:
        raise ValidationError(
            {
                "polling_interval_seconds": [
                    f"The polling interval must be at least {minimum} seconds "
                    f"({_duration(minimum)}), the tenant-wide minimum."
                ]
            }
        )
    if seconds > MAX_POLLING_SECONDS:
        raise ValidationError(
            {
                "polling_interval_seconds": [
                    f"The polling interval must be at most {MAX_POLLING_SECONDS} seconds "
                    f"({_duration(MAX_POLLING_SECONDS)})."
                ]
            }
        )
    return seconds


def default_polling_interval(connector: ConnectorSpec) -> int:
    """The connector's default, raised to the tenant-wide minimum."""
    return min(
        MAX_POLLING_SECONDS, max(connector.polling_interval_seconds, tenant_min_polling_seconds())
    )
