"""Re-encrypt every sealed row under the current (first) PORTAL_ENCRYPTION_KEYS key."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Count

from connections import vault


class Command(BaseCommand):
    help = (
        "Re-encrypt every credential (and every other sealed value) that is not under the "
        "current key, in batches, each in its own transaction. Safe to interrupt and to run "
        "again: rows already under the current key are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows re-encrypted per transaction (default 500).",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default 'default')."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only report how many rows use each old key.",
        )

    def handle(self, *args, batch_size: int, database: str, dry_run: bool, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            current = vault.current_key_id()
        except vault.VaultKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Current key id: {current}")

        failures: Counter[str] = Counter()
        if not dry_run:
            for entry in vault.SEALED_MODELS:
                failures.update(self._rotate(entry, current, batch_size, database))

        remaining = self._remaining(current, database)
        total_old = sum(remaining.values())
        if total_old == 0:
            old_ids = [k for k in vault.configured_key_ids() if k != current]
            unused = f" (key ids {', '.join(old_ids)})" if old_ids else ""
            self.stdout.write(
                self.style.SUCCESS(
                    f"0 rows use old keys: you may now remove them from {vault.SETTING}{unused}."
                )
            )
            return
        self.stdout.write(
            self.style.WARNING(f"{total_old} row(s) still use old keys; keep those keys:")
        )
        configured = set(vault.configured_key_ids())
        for (label, key_id), count in sorted(remaining.items()):
            note = "" if key_id in configured else " (key not configured: cannot decrypt)"
            self.stdout.write(f"  {label}: {count} row(s) under key id {key_id}{note}")
        if failures:
            for label, count in sorted(failures.items()):
                self.stderr.write(f"  {label}: {count} row(s) could not be decrypted")
            raise CommandError(
                "Some rows could not be re-encrypted (see above); they keep their old "
                "ciphertext. Fix the keys and run the command again."
            )
        if dry_run:
            return
        raise CommandError("Rows remain under old keys; run the command again.")

    def _rotate(
        self, entry: vault.SealedModel, current: str, batch_size: int, database: str
    ) -> Counter[str]:
        model = entry.model
        manager = model._default_manager.db_manager(database)
        kid, ctf = entry.key_id_field, entry.ciphertext_field
        pending = manager.exclude(**{kid: current})
        total = pending.count()
        failures: Counter[str] = Counter()
        if total == 0:
            self.stdout.write(f"{entry.label}: nothing to re-encrypt.")
            return failures
        done = 0
        last_pk = None
        while True:
            batch_qs = pending.order_by("pk")
            if last_pk is not None:
                batch_qs = batch_qs.filter(pk__gt=last_pk)
            with transaction.atomic(using=database):
                # FOR UPDATE (where the database has it) holds each row until the
                # batch commits, so a secret replaced meanwhile is not overwritten
                # with its old value.
                rows = list(batch_qs.select_for_update()[:batch_size])
                if not rows:
                    break
                for row in rows:
                    last_pk = row.pk
                    ciphertext = getattr(row, ctf)
                    if getattr(row, kid) == current:
                        continue
                    try:
                        new_ciphertext, new_kid = vault.reseal(ciphertext, aad=entry.aad(row))
                    except vault.VaultKeyError:
                        raise
                    except vault.VaultError as exc:
                        failures[entry.label] += 1
                        self.stderr.write(f"{entry.label} pk={row.pk}: {exc}")
                        continue
                    # update() leaves auto_now fields alone: the secret did not change.
                    manager.filter(pk=row.pk).update(**{ctf: new_ciphertext, kid: new_kid})
                    done += 1
            self.stdout.write(f"{entry.label}: re-encrypted {done}/{total}")
        return failures

    def _remaining(self, current: str, database: str) -> Counter[tuple[str, str]]:
        remaining: Counter[tuple[str, str]] = Counter()
        for entry in vault.SEALED_MODELS:
            rows = (
                entry.model._default_manager.db_manager(database)
                .exclude(**{entry.key_id_field: current})
                .values(entry.key_id_field)
                .annotate(n=Count("pk"))
                .order_by(entry.key_id_field)
            )
            for row in rows:
                remaining[(entry.label, row[entry.key_id_field])] = row["n"]
        return remaining
