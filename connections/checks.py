"""System checks for the credential vault's keys (registered in ConnectionsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags
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
    from django.db.models import Count

    configured = set(vault.configured_key_ids())
    errors: list[Error] = []
    for entry in vault.SEALED_MODELS:
        model = entry.model
        for alias in databases:
            if alias not in connections:
                continue
            if model._meta.db_table not in connections[alias].introspection.table_names():
                continue  # not migrated yet: nothing is sealed
            rows = (
                model._default_manager.using(alias)
                .exclude(**{f"{entry.key_id_field}__in": configured})
                .values(entry.key_id_field)
                .annotate(n=Count("pk"))
                .order_by(entry.key_id_field)
            )
            unknown = {row[entry.key_id_field]: row["n"] for row in rows}
            for key_id, count in unknown.items():
                errors.append(
                    Error(
                        f"{count} {entry.label} row(s) in database {alias!r} are sealed with "
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
    from django.core.checks import register as register_check

    register_check(check_encryption_keys, Tags.security)
    register_check(check_sealed_rows, Tags.database)
