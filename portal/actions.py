"""Writes of the portal app, one named function each, used alike by pages,
the admin, management commands and tests. Callers ask ``portal.permissions``
first; these functions validate the data, not the caller."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from portal import audit
from portal.models import AuditRecord, Folder, Role, RoleAssignment, TenantSettings


def _folder_target(folder: Folder) -> tuple[str, int, str]:
    return ("folder", folder.pk, folder.name)


def create_folder(*, name: str, parent: Folder | None, description: str = "", actor=None) -> Folder:
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
            folder = Folder.objects.create(name=name, parent=parent, description=description)
            audit.record(
                AuditRecord.Action.FOLDER_CREATED,
                actor=actor,
                folder=folder,
                target=_folder_target(folder),
                detail=f"In {parent.name}." if parent else "At the top level.",
            )
            return folder
    except IntegrityError:
        raise ValidationError({"name": f"A folder named {name!r} already exists there."}) from None


def save_folder(folder: Folder, *, actor) -> Folder:
    """Save a folder edited in place (the admin): renamed and moved are
    audited, with the names before and after."""
    with transaction.atomic():
        before = (
            Folder.objects.select_related("parent").filter(pk=folder.pk).first()
            if folder.pk
            else None
        )
        folder.save()
        if before is None:
            audit.record(
                AuditRecord.Action.FOLDER_CREATED,
                actor=actor,
                folder=folder,
                target=_folder_target(folder),
            )
            return folder
        if before.name != folder.name:
            audit.record(
                AuditRecord.Action.FOLDER_RENAMED,
                actor=actor,
                folder=folder,
                target=_folder_target(folder),
                detail=f"{before.name} → {folder.name}",
            )
        if before.parent_id != folder.parent_id:
            old = before.parent.name if before.parent else "the top level"
            new = folder.parent.name if folder.parent else "the top level"
            audit.record(
                AuditRecord.Action.FOLDER_MOVED,
                actor=actor,
                folder=folder,
                target=_folder_target(folder),
                detail=f"From {old} to {new}",
            )
    return folder


def delete_folder(folder: Folder, *, actor) -> None:
    """Delete a folder with everything in it (its subfolders, connections
    and role assignments), audited first."""
    with transaction.atomic():
        below = Folder.objects.filter(path__startswith=folder.path).exclude(pk=folder.pk).count()
        audit.record(
            AuditRecord.Action.FOLDER_DELETED,
            actor=actor,
            folder=folder,
            target=_folder_target(folder),
            detail=f"With {below} subfolder(s)." if below else "",
        )
        folder.delete()


def assign_role(
    *, folder: Folder, role: Role, user=None, group: Group | None = None, assigned_by=None
) -> RoleAssignment:
    if folder.is_personal:
        raise ValidationError("Roles cannot be assigned on a personal workspace.")
    if (user is None) == (group is None):
        raise ValidationError("Choose either a user or a group.")
    existing = RoleAssignment.objects.filter(folder=folder, role=role, user=user, group=group)
    who = user.get_username() if user else f"group {group.name}"
    if existing.exists():
        raise ValidationError(f"{who} already has the role {role.name} on {folder.name}.")
    with transaction.atomic():
        assignment = RoleAssignment.objects.create(
            folder=folder, role=role, user=user, group=group, created_by=assigned_by
        )
        audit.record(
            AuditRecord.Action.ROLE_ASSIGNED,
            actor=assigned_by,
            folder=folder,
            target=("role_assignment", assignment.pk, f"{role.name} for {who}"),
        )
    return assignment


def remove_assignment(*, assignment: RoleAssignment, actor=None) -> None:
    with transaction.atomic():
        audit.record(
            AuditRecord.Action.ROLE_REMOVED,
            actor=actor,
            folder_id=assignment.folder_id,
            target=(
                "role_assignment",
                assignment.pk,
                f"{assignment.role.name} for {assignment.principal_name}",
            ),
        )
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
