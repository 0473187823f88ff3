"""System checks for the credential vault's keys (registered in ConnectionsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags
from django.core.checks import register as register_check
from django.db import connections

from connections import vault

HINT_GENERATE = vault.GENERATE_HINT
HINT_DEV = "For `make run`, delete var/dev.env and run `make run` again: it writes a new one."


def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """connections.E001-E003: PORTAL_ENCRYPTION_KEYS is set, well-formed, without repeats."""
    errors: list[Error] = []
    for problem in vault.find_key_problems(getattr(settings, vault.SETTING, None)):
        if problem.code == "missing":
            hint = f"Set {vault.SETTING}. {HINT_GENERATE}"
            if settings.DEBUG:
                hint += f" {HINT_DEV}"
            errors.append(Error(problem.message, hint=hint, id="connections.E001"))
        elif problem.code == "malformed":
            errors.append(
                Error(
                    problem.message,
                    hint=f"Replace it with a generated key. {HINT_GENERATE}",
                    id="connections.E002",
                )
            )
        else:
            errors.append(
                Error(
                    problem.message,
                    hint="List each key once: the first encrypts, the others only decrypt.",
                    id="connections.E003",
                )
            )
    return errors


def check_sealed_rows(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[Error]:
    """connections.E004: rows sealed with a key that is no longer configured.

    A database check: it runs with `migrate` and `check --database default`.
    """
    if not databases or vault.find_key_problems(getattr(settings, vault.SETTING, None)):
        return []
    errors: list[Error] = []
    for alias in databases:
        if alias not in connections:
            continue
        tables = set(connections[alias].introspection.table_names())
        # Not migrated yet: nothing is sealed.
        migrated = [entry for entry in vault.SEALED_MODELS if entry.model._meta.db_table in tables]
        for label, key_id, count in vault.rows_under_missing_keys(migrated, using=alias):
            errors.append(
                Error(
                    f"{count} {label} row(s) in database {alias!r} are sealed with "
                    f"key id {key_id!r}, which is not in {vault.SETTING}: they cannot "
                    "be decrypted.",
                    hint=(
                        "Put the old key back (after the current one) and run "
                        "`python manage.py rotate_encryption_keys` before removing it. "
                        "If the key is lost, those secrets must be entered again."
                    ),
                    id="connections.E004",
                )
            )
    return errors


def register() -> None:
    register_check(check_encryption_keys, Tags.security)
    register_check(check_sealed_rows, Tags.database)
