"""Writes of the portal app, one named function each, used alike by pages,
the admin, management commands and tests. Callers ask ``portal.permissions``
first; these functions validate the data, not the caller."""

from __future__ import annotations

from collections import Counter

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models.deletion import Collector

from portal import audit
from portal.models import (
    AuditRecord,
    Folder,
    FolderGroupGrant,
    FolderUserGrant,
    Role,
    RoleAssignment,
    TenantSettings,
)


def _folder_target(folder: Folder) -> tuple[str, int, str]:
    return ("folder", folder.pk, folder.name)


def _where(parent: Folder | None) -> str:
    return f"in {parent.name}" if parent else "at the top level"


def check_folder_place(
    folder: Folder | None, *, name: str, parent: Folder | None, place_field: str = "parent"
) -> None:
    """The rules of where a folder may stand and under which name, written
    once for creating (``folder`` None), renaming and moving one, in the
    pages and the admin alike: a name; no subfolder of a personal
    workspace; not into itself nor below itself; no shared sibling of the
    same name, whatever its case. Raises ``ValidationError`` keyed
    ``name`` for the name and ``place_field`` for the place (the create
    form has no field but the name)."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the folder a name."})
    if folder is not None and folder.is_personal:
        if parent is not None:
            raise ValidationError({place_field: "A personal workspace cannot be moved."})
        return  # its name is its own: no shared sibling to clash with
    if parent is not None and parent.is_personal:
        raise ValidationError({place_field: "Personal workspaces have no subfolders."})
    if folder is not None and folder.pk and parent is not None:
        stored = Folder.objects.filter(pk=folder.pk).values_list("path", flat=True).first()
        if parent.pk == folder.pk:
            raise ValidationError({place_field: "A folder cannot be moved into itself."})
        if stored and Folder.objects.filter(pk=parent.pk, path__startswith=stored).exists():
            raise ValidationError(
                {
                    place_field: f"A folder cannot be moved below itself: {parent.name} "
                    f"is one of {folder.name}'s subfolders."
                }
            )
    siblings = Folder.objects.filter(parent=parent, kind=Folder.Kind.SHARED, name__iexact=name)
    if folder is not None and folder.pk:
        siblings = siblings.exclude(pk=folder.pk)
    if siblings.exists():
        # Staying where it is, the name is what clashes; moving, the place.
        staying = folder is None or not folder.pk or _stored_parent_id(folder) == _pk(parent)
        message = f"A folder named {name!r} already exists {_where(parent)}."
        raise ValidationError({"name" if staying else place_field: message})


def _pk(folder: Folder | None) -> int | None:
    return folder.pk if folder is not None else None


def _stored_parent_id(folder: Folder) -> int | None:
    return Folder.objects.filter(pk=folder.pk).values_list("parent_id", flat=True).first()


def create_folder(*, name: str, parent: Folder | None, description: str = "", actor=None) -> Folder:
    name = name.strip()
    check_folder_place(None, name=name, parent=parent, place_field="name")
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


def rename_folder(folder: Folder, *, name: str, description: str | None = None, actor) -> Folder:
    """Rename a folder (and change its description, unless None), checked
    as creating one is; a rename is audited with the names before and after."""
    name = name.strip()
    check_folder_place(folder, name=name, parent=folder.parent)
    folder.name = name
    if description is not None:
        folder.description = description.strip()
    return _save_checked(folder, actor=actor, field="name")


def move_folder(folder: Folder, *, parent: Folder | None, actor) -> Folder:
    """Move a folder, with everything below it, under ``parent`` (None: the
    top level). Refused, with a message saying why, into itself or below
    itself, into a personal workspace, next to a sibling of the same name,
    or where it already is. Audited with the places before and after."""
    if _stored_parent_id(folder) == _pk(parent):
        raise ValidationError({"parent": f"{folder.name} is already {_where(parent)}."})
    check_folder_place(folder, name=folder.name, parent=parent)
    folder.parent = parent
    return _save_checked(folder, actor=actor, field="parent")


def _save_checked(folder: Folder, *, actor, field: str) -> Folder:
    try:
        with transaction.atomic():
            return save_folder(folder, actor=actor)
    except IntegrityError:
        where = _where(folder.parent)
        raise ValidationError(
            {field: f"A folder named {folder.name!r} already exists {where}."}
        ) from None


def save_folder(folder: Folder, *, actor) -> Folder:
    """Save a folder edited in place (the admin, after its form asked
    ``check_folder_place``; ``rename_folder`` and ``move_folder``, which
    ask it themselves): renamed and moved are audited, with the names
    before and after."""
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


def folder_deletion_impact(folder: Folder) -> list[tuple[str, int]]:
    """What deleting the folder deletes with it, as (what, how many), the
    subfolders first: exactly what ``delete_folder`` cascades to (Django's
    own deletion collector, so a model added later is counted without
    anyone remembering to, and this app needs to know none of the apps
    whose rows live in folders). The guardian rows that mirror role
    assignments are not counted apart."""
    collector = Collector(using=router.db_for_write(Folder))
    collector.collect([folder])
    counts: Counter[type] = Counter()
    for model, instances in collector.data.items():
        counts[model] += len(instances)
    for queryset in collector.fast_deletes:
        counts[queryset.model] += queryset.count()
    counts[Folder] -= 1  # the folder itself
    mirrored = {FolderUserGrant, FolderGroupGrant}
    impact = [("subfolder" if counts[Folder] == 1 else "subfolders", counts.pop(Folder))]
    for model, count in sorted(counts.items(), key=lambda item: item[0]._meta.label):
        if count and model not in mirrored:
            meta = model._meta
            what = meta.verbose_name if count == 1 else meta.verbose_name_plural
            impact.append((str(what), count))
    return impact


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
