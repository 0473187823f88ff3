"""The audit log: one function writes it, whatever is audited."""

from __future__ import annotations

from django.conf import settings

from portal.models import ApiKey, AuditRecord, Folder

# Where credential reads are recorded: the connection that commits without
# waiting for the WAL flush when there is one (portal/settings.py).
READS_DATABASE = "audit" if "audit" in settings.DATABASES else "default"


def record(
    action: str,
    *,
    actor=None,
    api_key: ApiKey | None = None,
    folder: Folder | None = None,
    target: tuple[str, object, str] | None = None,
    job_id: str = "",
    ip: str | None = None,
    detail: str = "",
) -> None:
    """Append one record. ``target`` is (type, id, name) of what was acted on.
    Callers pass names and ids, never a secret. A credential read is recorded
    on its own connection (``READS_DATABASE``), committed at once and, on
    PostgreSQL unless PORTAL_AUDIT_SYNCHRONOUS, without waiting for the
    flush; every other record joins the caller's transaction."""
    target_type, target_id, target_name = target or ("", "", "")
    reads = action == AuditRecord.Action.CREDENTIALS_READ
    AuditRecord.objects.using(READS_DATABASE if reads else "default").create(
        action=action,
        actor_id=actor.pk if actor is not None else None,
        actor_name=actor.get_username() if actor is not None else "",
        api_key_id=api_key.pk if api_key is not None else None,
        api_key_name=f"{api_key.name} ({api_key.hint}…)"[:100] if api_key else "",
        folder_id=folder.pk if folder is not None else None,
        target_type=target_type,
        target_id=str(target_id),
        target_name=str(target_name)[:200],
        job_id=(job_id or "")[:100],
        ip_address=ip or None,
        detail=detail[:300],
    )
