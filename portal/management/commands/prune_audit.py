"""manage.py prune_audit [--days N]: delete audit records older than the
retention (PORTAL_AUDIT_RETENTION_DAYS, or --days); the pruning is itself
recorded. Beat runs the same daily."""

from django.core.management.base import BaseCommand, CommandError

from portal import audit_log


class Command(BaseCommand):
    help = "Delete audit records older than PORTAL_AUDIT_RETENTION_DAYS (or --days)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days", type=int, default=None, help="Keep this many days instead of the setting."
        )

    def handle(self, *args, days: int | None = None, **options) -> None:
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        deleted = audit_log.prune(days=days)
        if deleted == 0 and days is None and not audit_log.retention_days():
            self.stdout.write("PORTAL_AUDIT_RETENTION_DAYS is 0: every record is kept.")
            return
        self.stdout.write(f"Deleted {deleted} audit record(s).")
