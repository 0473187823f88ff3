"""The audit log: one function writes it, whatever is audited.

Domain functions call ``record``; where the request came from (its client
address, the API key that authenticated it) is bound once per request by
``AuditContextMiddleware`` and the API's authentication (``bind``), so that
the pages, the API, the command-line client and the admin record alike
without passing it down."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, replace

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from portal.client_ip import client_ip
from portal.models import ApiKey, AuditRecord, Folder


@dataclass(frozen=True)
class Origin:
    """Where the request being served came from, and the request (whose user,
    signed in or authenticated by an API key, is the actor of records that
    name none)."""

    ip: str | None = None
    api_key: ApiKey | None = None
    request: HttpRequest | None = None

    @property
    def user(self):
        user = getattr(self.request, "user", None)
        return user if user is not None and user.is_authenticated else None


_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "audit_origin", default=None
)


def bind(**values) -> None:
    """Note, for this request's records, where it came from (``ip``, ``api_key``)."""
    _origin.set(replace(_origin.get() or Origin(), **values))


class AuditContextMiddleware:
    """Binds the client's address for the request's audit records, and
    forgets it (and the API key) once the response is made."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _origin.set(Origin(ip=client_ip(request) or None, request=request))
        try:
            return self.get_response(request)
        finally:
            _origin.reset(token)


# Where credential reads are recorded: the connection that commits without
# waiting for the WAL flush when there is one (portal/settings.py).
READS_DATABASE = "audit" if "audit" in settings.DATABASES else "default"


def record(
    action: str,
    *,
    actor=None,
    api_key: ApiKey | None = None,
    folder: Folder | None = None,
    folder_id: int | None = None,
    target: tuple[str, object, str] | None = None,
    job_id: str = "",
    ip: str | None = None,
    detail: str = "",
) -> None:
    """Append one record. ``target`` is (type, id, name) of what was acted on.
    Callers pass names and ids, never a secret; the request's user, address
    and API key, when not given, are the ones bound for it. A credential read is recorded
    on its own connection (``READS_DATABASE``), committed at once and, on
    PostgreSQL unless PORTAL_AUDIT_SYNCHRONOUS, without waiting for the
    flush; every other record joins the caller's transaction."""
    origin = _origin.get() or Origin()
    actor = actor if actor is not None else origin.user
    ip = ip or origin.ip
    api_key = api_key or origin.api_key
    target_type, target_id, target_name = target or ("", "", "")
    reads = action == AuditRecord.Action.CREDENTIALS_READ
    AuditRecord.objects.using(READS_DATABASE if reads else "default").create(
        action=action,
        actor_id=actor.pk if actor is not None else None,
        actor_name=actor.get_username() if actor is not None else "",
        api_key_id=api_key.pk if api_key is not None else None,
        api_key_name=f"{api_key.name} ({api_key.hint}…)"[:100] if api_key else "",
        folder_id=folder.pk if folder is not None else folder_id,
        target_type=target_type,
        target_id=str(target_id),
        target_name=str(target_name)[:200],
        job_id=(job_id or "")[:100],
        ip_address=ip or None,
        detail=detail[:300],
    )


def record_connection(action: str, connection, *, actor, detail: str = "") -> None:
    """A change to a connection, recorded with its folder and name."""
    record(
        action,
        actor=actor,
        folder_id=connection.folder_id,
        target=("connection", connection.pk, connection.name),
        detail=detail,
    )
