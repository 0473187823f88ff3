"""The audit log: one function writes it, whatever is audited."""

from __future__ import annotations

from functools import cache

from django.db import connection

from portal.models import ApiKey, AuditRecord, Folder


@cache
def _insert_sql() -> tuple[str, tuple]:
    """The INSERT of one record, written once from the model: every
    credential read writes one, and composing it through the ORM's insert
    compiler cost several times what running it does."""
    fields = tuple(field for field in AuditRecord._meta.concrete_fields if not field.primary_key)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = connection.ops.quote_name(AuditRecord._meta.db_table)
    # Only names from the model and %s placeholders: S608 is moot.
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})", fields  # noqa: S608


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
) -> AuditRecord:
    """Append one record. ``target`` is (type, id, name) of what was acted on.
    Callers pass names and ids, never a secret. The record returned has no
    primary key: nothing ever changes a record once written."""
    target_type, target_id, target_name = target or ("", "", "")
    entry = AuditRecord(
        action=action,
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        api_key=api_key,
        api_key_name=f"{api_key.name} ({api_key.hint}…)"[:100] if api_key is not None else "",
        folder=folder,
        target_type=target_type,
        target_id=str(target_id),
        target_name=str(target_name)[:200],
        job_id=(job_id or "")[:100],
        ip_address=ip or None,
        detail=detail[:300],
    )
    sql, fields = _insert_sql()
    values = [field.get_db_prep_save(field.pre_save(entry, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
    return entry
