"""Writes of the portal app, one named function each, used alike by pages,
the admin, management commands and tests. Callers ask ``portal.permissions``
first; these functions validate the data, not the caller."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from portal import audit
from portal.models import AuditRecord, Folder, Role, RoleAssignment, TenantSettings


def create_folder(*, name: str, parent: Folder | None, description: str = "") -> Folder:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the folder a name."})
    if parent is not None and parent.is_personal:
        raise ValidationError({"name": "Personal workspaces have no subfolders."})
    siblings = Folder.objects.filter(parent=parent, kind=Folder.Kind.SHARED)
    if siblings.filter(name__iexact=name).exists():
        where = f"in {parent.name}" if parent else "at the top level"
        raise ValidationError({"name": f"A folder named {name!r} already exists {where}."})
    try:
        with transaction.atomic():
            return Folder.objects.create(name=name, parent=parent, description=description)
    except IntegrityError:
        raise ValidationError({"name": f"A folder named {name!r} already exists there."}) from None


def assign_role(
    *, folder: Folder, role: Role, user=None, group: Group | None = None, assigned_by=None
) -> RoleAssignment:
    if folder.is_personal:
        raise ValidationError("Roles cannot be assigned on a personal workspace.")
    if (user is None) == (group is None):
        raise ValidationError("Choose either a user or a group.")
    existing = RoleAssignment.objects.filter(folder=folder, role=role, user=user, group=group)
    if existing.exists():
        who = user.get_username() if user else f"group {group.name}"
        raise ValidationError(f"{who} already has the role {role.name} on {folder.name}.")
    return RoleAssignment.objects.create(
        folder=folder, role=role, user=user, group=group, created_by=assigned_by
    )


def remove_assignment(*, assignment: RoleAssignment) -> None:
    assignment.delete()


def set_governance(
    *,
    allow_shared_connection_creation: bool,
    changed_by,
    min_polling_interval_seconds: int | None = None,
    read_only: bool | None = None,
) -> TenantSettings:
    """Tenant-wide settings; a minimum polling interval (or read-only mode) of
    None keeps the current one. Each change is audited, naming the values
    before and after."""
    with transaction.atomic():
        tenant = TenantSettings.objects.select_for_update().get(pk=TenantSettings.load().pk)
        governance = []
        if tenant.allow_shared_connection_creation != allow_shared_connection_creation:
            governance.append(
                "Users may create connections in shared folders: "
                + ("off → on" if allow_shared_connection_creation else "on → off")
            )
            tenant.allow_shared_connection_creation = allow_shared_connection_creation
        if (
            min_polling_interval_seconds is not None
            and tenant.min_polling_interval_seconds != min_polling_interval_seconds
        ):
            governance.append(
                f"Minimum polling interval: {tenant.min_polling_interval_seconds} s → "
                f"{min_polling_interval_seconds} s"
            )
            tenant.min_polling_interval_seconds = min_polling_interval_seconds
        settings_changed = read_only is not None and tenant.read_only != read_only
        if settings_changed:
            tenant.read_only = read_only
        tenant.updated_by = changed_by
        tenant.save()
        if governance:
            audit.record(
                AuditRecord.Action.GOVERNANCE_CHANGED,
                actor=changed_by,
                detail="; ".join(governance),
            )
        if settings_changed:
            audit.record(
                AuditRecord.Action.TENANT_SETTINGS_CHANGED,
                actor=changed_by,
                detail="Read-only API and command-line client: "
                + ("off → on" if read_only else "on → off"),
            )
    return tenant
