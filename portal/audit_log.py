"""What the audit log shows: the records a user may read (``permissions.
audit_scope``), narrowed by the page's filters, a page at a time or all of
them as CSV, streamed. Records are never changed or deleted here; old ones
are pruned by ``prune`` alone, as the retention setting says."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from portal import audit
from portal.models import AuditRecord, Folder

CSV_COLUMNS = (
    "time",
    "actor",
    "api_key",
    "action",
    "target_type",
    "target_id",
    "target",
    "folder",
    "job_id",
    "address",
    "detail",
)
# A cell a spreadsheet would read as a formula starts with one of these: the
# export quotes it (a name or a provider's words are data, never a formula).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Filters:
    """The page's filters, already validated (``AuditFilterForm``)."""

    action: str = ""
    q: str = ""
    folder: Folder | None = None  # and the folders below it
    connection_id: int | None = None
    actor: str = ""
    since: date | None = None
    until: date | None = None  # inclusive

    @property
    def any(self) -> bool:
        return any((self.action, self.q, self.folder, self.connection_id, self.actor)) or bool(
            self.since or self.until
        )


def records(scope: Q, filters: Filters) -> QuerySet[AuditRecord]:
    """The records within ``scope`` that match ``filters``, newest first,
    with their folder (one query a page, whatever the number of records)."""
    rows = AuditRecord.objects.filter(scope).select_related("folder")
    if filters.action:
        rows = rows.filter(action=filters.action)
    if filters.q:
        rows = rows.filter(
            Q(actor_name__icontains=filters.q)
            | Q(api_key_name__icontains=filters.q)
            | Q(target_name__icontains=filters.q)
            | Q(job_id__icontains=filters.q)
            | Q(detail__icontains=filters.q)
        )
    if filters.folder is not None:
        rows = rows.filter(folder__path__startswith=filters.folder.path)
    if filters.connection_id is not None:
        rows = rows.filter(target_type="connection", target_id=str(filters.connection_id))
    if filters.actor:
        rows = rows.filter(actor_name__iexact=filters.actor)
    zone = timezone.get_current_timezone()
    if filters.since:
        rows = rows.filter(created_at__gte=datetime.combine(filters.since, time.min, zone))
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), time.min, zone)
        rows = rows.filter(created_at__lt=end)
    return rows.order_by("-created_at", "-pk")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file-like object whose write hands the line back (for streaming)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: QuerySet[AuditRecord]) -> Iterator[str]:
    """The records as CSV, a line at a time, read from the database in chunks
    (a year of records never sits in memory at once)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for record in rows.iterator(chunk_size=2000):
        yield writer.writerow(
            [
                record.created_at.isoformat(),
                _cell(record.actor_name or "System"),
                _cell(record.api_key_name),
                record.action,
                record.target_type,
                _cell(record.target_id),
                _cell(record.target_name),
                _cell(record.folder.name if record.folder else ""),
                _cell(record.job_id),
                record.ip_address or "",
                _cell(record.detail),
            ]
        )


def retention_days() -> int:
    return settings.PORTAL_AUDIT_RETENTION_DAYS


def prune(*, days: int | None = None, actor=None, now: datetime | None = None) -> int:
    """Delete the records older than the retention (``PORTAL_AUDIT_RETENTION_DAYS``
    unless ``days`` is given; 0 keeps them all), and record that it was done.
    Returns how many went."""
    days = retention_days() if days is None else days
    if days <= 0:
        return 0
    before = (now or timezone.now()) - timedelta(days=days)
    with transaction.atomic():
        deleted, _ = AuditRecord.objects.filter(created_at__lt=before).delete()
        audit.record(
            AuditRecord.Action.AUDIT_PRUNED,
            actor=actor,
            detail=f"{deleted} record(s) older than {days} days "
            f"(before {before:%Y-%m-%d %H:%M} UTC).",
        )
    return deleted
