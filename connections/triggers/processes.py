"""Processes: a folder's automations that events start, by a signed webhook
and/or a job queue robots pull. The webhook signing secret is sealed by the
vault and handed out once, when it is made."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction

from connections import vault
from connections.models import Connection, Process, ProcessConnection
from portal import audit
from portal.models import AuditRecord, Folder

SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32


@dataclass(frozen=True)
class NewProcess:
    """A process just made, and its webhook signing secret: shown once, never
    again (None without a webhook)."""

    process: Process
    signing_secret: str | None


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def clean_webhook_url(url: str) -> str:
    """An http(s) address, or "" for none. Where it may point is the outbound
    client's to decide on each delivery (the request forgery guard)."""
    url = (url or "").strip()
    if not url:
        return ""
    try:
        URLValidator(schemes=["https", "http"])(url)
    except ValidationError:
        raise ValidationError(
            {"webhook_url": "Enter a full https:// address for the webhook."}
        ) from None
    return url


def _bind_requirements(
    process: Process,
    folder: Folder,
    requirements: dict[str, Connection | None],
    *,
    replace: bool = False,
    elsewhere: bool = False,
) -> None:
    """Bind each connector key to a connection of the folder (or None, still
    to choose); with ``replace``, a connector no longer named stops being
    required. ``elsewhere``: a connection of another folder may be bound (a
    solution's deployment linked it; the caller checked the access)."""
    for connector_key, connection in requirements.items():
        if connection is not None and (
            (connection.folder_id != folder.pk and not elsewhere)
            or connection.connector_key != connector_key
        ):
            raise ValidationError(
                {
                    "requirements": f"{connection.name} is not a {connector_key} connection "
                    f"of {folder.name}."
                }
            )
        ProcessConnection.objects.update_or_create(
            process=process, connector_key=connector_key, defaults={"connection": connection}
        )
    if replace:
        ProcessConnection.objects.filter(process=process).exclude(
            connector_key__in=list(requirements)
        ).delete()


def _clean(name: str, webhook_url: str, job_queue: bool) -> tuple[str, str]:
    """The name and webhook address as stored; ValidationError by field for
    a missing or long name, a bad address, or no way to start the process."""
    name = (name or "").strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the process a name."
    elif len(name) > Process._meta.get_field("name").max_length:
        errors["name"] = "The name is too long (120 characters at most)."
    try:
        webhook_url = clean_webhook_url(webhook_url)
    except ValidationError as error:
        errors.update({k: v[0] for k, v in error.message_dict.items()})
    if not webhook_url and not job_queue and "webhook_url" not in errors:
        errors["webhook_url"] = "Give a webhook address, or let robots pull its jobs, or both."
    if errors:
        raise ValidationError(errors)
    return name, webhook_url


def save_process(
    process: Process,
    *,
    name: str,
    description: str = "",
    webhook_url: str = "",
    job_queue: bool = False,
    requirements: dict[str, Connection | None] | None = None,
    replace_requirements: bool = False,
    elsewhere: bool = False,
) -> str | None:
    """Write a process made or changed (``process.folder`` set; ``pk`` None
    for a new one), all or nothing: the one place the rules of both are.
    A webhook needs a signing secret: one is made, sealed, and returned once
    when the process has none yet (a new process, or a first webhook added);
    an existing secret is kept when the address changes or goes (None)."""
    name, webhook_url = _clean(name, webhook_url, job_queue)
    folder = process.folder
    secret = new_signing_secret() if webhook_url and not process.ciphertext else None
    process.name = name
    process.description = (description or "").strip()[:500]
    process.webhook_url = webhook_url
    process.job_queue = job_queue
    try:
        with transaction.atomic():
            process.save()
            if secret:
                vault.seal_row(process, {"secret": secret})
                process.save(update_fields=["ciphertext", "key_id"])
            if requirements is not None:
                _bind_requirements(
                    process, folder, requirements, replace=replace_requirements, elsewhere=elsewhere
                )
    except IntegrityError:
        raise ValidationError(
            {"name": f"{folder.name} already has a process named {name}."}
        ) from None
    return secret


def create_process(
    *,
    folder: Folder,
    name: str,
    description: str = "",
    webhook_url: str = "",
    job_queue: bool = False,
    requirements: dict[str, Connection | None] | None = None,
    created_by=None,
    elsewhere: bool = False,
) -> NewProcess:
    """Make a process in ``folder``. With a webhook, a signing secret is made,
    sealed, and returned once in the answer. ``requirements``: connector key
    -> a connection of the folder (or None, still to choose). ValidationError
    (by field) for a missing or taken name, a bad address, no way to start it,
    or a connection of another folder or connector; nothing is made then."""
    process = Process(folder=folder, created_by=created_by)
    try:
        secret = save_process(
            process,
            name=name,
            description=description,
            webhook_url=webhook_url,
            job_queue=job_queue,
            requirements=requirements or {},
            elsewhere=elsewhere,
        )
    except ValidationError:
        process.pk = None  # nothing was made
        raise
    _record(AuditRecord.Action.PROCESS_CREATED, process, actor=created_by)
    return NewProcess(process, secret)


def edit_process(
    process: Process,
    *,
    name: str,
    description: str = "",
    webhook_url: str = "",
    job_queue: bool = False,
    requirements: dict[str, Connection | None] | None = None,
    elsewhere: bool = False,
) -> NewProcess:
    """Change a process by the same rules as ``create_process``.
    ``requirements`` (None: unchanged) is the whole set: a connector not named
    stops being required. Its signing secret is kept when the webhook address
    changes; the answer carries a new one (once) only when a first webhook
    is added to a process that never had one. ValidationError by field;
    nothing changes then."""
    before = {field: getattr(process, field) for field in EDITABLE}
    try:
        secret = save_process(
            process,
            name=name,
            description=description,
            webhook_url=webhook_url,
            job_queue=job_queue,
            requirements=requirements,
            replace_requirements=True,
            elsewhere=elsewhere,
        )
    except ValidationError:
        for field, value in before.items():
            setattr(process, field, value)
        raise
    changed = [field for field in EDITABLE[:4] if before[field] != getattr(process, field)]
    _record(
        AuditRecord.Action.PROCESS_EDITED,
        process,
        detail="Changed " + ", ".join(changed).replace("_", " ") + "." if changed else "",
    )
    return NewProcess(process, secret)


# What an edit changes on the row (a refused edit puts them back on the object).
EDITABLE = ("name", "description", "webhook_url", "job_queue", "ciphertext", "key_id")


def replace_signing_secret(process: Process) -> str:
    """A new signing secret for the process's webhook, returned once; the old
    one stops working at once."""
    secret = new_signing_secret()
    vault.seal_row(process, {"secret": secret})
    with transaction.atomic():
        process.save(update_fields=["ciphertext", "key_id", "updated_at"])
        _record(AuditRecord.Action.PROCESS_EDITED, process, detail="Signing secret replaced.")
    return secret


def signing_secret(process: Process) -> str:
    """The process's webhook signing secret, for signing a delivery only
    (never shown). VaultError when it cannot be opened."""
    return vault.unseal_row(process).get("secret", "")


def delete_process(process: Process) -> None:
    """The process goes, with its triggers, their events, jobs and deliveries,
    and its sealed signing secret."""
    with transaction.atomic():
        _record(AuditRecord.Action.PROCESS_DELETED, process)
        process.delete()


def _record(action: str, process: Process, *, actor=None, detail: str = "") -> None:
    """A change to a process, audited with its folder (the actor: the
    request's user when not given)."""
    audit.record(
        action,
        actor=actor,
        folder_id=process.folder_id,
        target=("process", process.pk, process.name),
        detail=detail,
    )
