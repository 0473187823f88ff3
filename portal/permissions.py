"""The one place that answers "may this user do X in this folder".

Views, HTMX partials, the admin and the API all ask here. Grants are stored
as django-guardian object permissions on the folder a role was assigned on
(``FolderUserGrant`` / ``FolderGroupGrant``); a grant applies to that folder
and every folder below it, which the materialised ``Folder.path`` answers
without recursion. On top of the grants:

* a personal workspace belongs to its owner alone (every permission except
  managing access); nobody else sees inside it, tenant administrators
  included, though they may list that it exists;
* tenant administrators hold every permission on every shared folder;
* with governance "Allow users to create connections in shared folders" off,
  Connections - Create in a shared folder is kept only by folder
  administrators (those who may manage the folder's access); a refusal for
  that reason says so (``GovernanceRefusal``), not that the role lacks it;
* changing a connection's fields needs Connections - Use as well as Edit
  (``may_change_fields``): the check sends the stored credential to them;
* people manage their own API keys, tenant administrators those of robot
  accounts (``may_manage_keys_of``).

Lists ask ``folders_where`` (``visible_folders``; connections through
``Connection.objects.visible_to``), the same rule as one query.

A folder the user may not see answers 404 (``get_folder_or_404``); a visible
folder where the action is not allowed answers 403 (``require``). So does a
connection: 404 without Connections - View on its folder
(``require_connections_visible``), 403 without the action
(``require_on_connection``).
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import (
    CharField,
    Exists,
    F,
    OuterRef,
    Q,
    Value,
)
from django.db.models.functions import Cast, Concat, StrIndex
from django.db.models.lookups import GreaterThan
from django.http import Http404

from portal.models import (
    FOLDER_PERMISSION_CODENAMES,
    FOLDER_PERMISSIONS,
    Folder,
    FolderGroupGrant,
    FolderQuerySet,
    FolderUserGrant,
    Role,
    RoleAssignment,
    TenantSettings,
)


class Action(StrEnum):
    """Folder actions; every value but VIEW_FOLDER is a permission codename."""

    VIEW_FOLDER = "view_folder"
    VIEW_CONNECTIONS = "view_connections"
    USE_CONNECTIONS = "use_connections"
    CREATE_CONNECTIONS = "create_connections"
    EDIT_CONNECTIONS = "edit_connections"
    DELETE_CONNECTIONS = "delete_connections"
    VIEW_TRIGGERS = "view_triggers"
    MANAGE_TRIGGERS = "manage_triggers"
    VIEW_PROCESSES = "view_processes"
    MANAGE_PROCESSES = "manage_processes"
    VIEW_JOBS = "view_jobs"
    VIEW_SOLUTIONS = "view_solutions"
    AUTHOR_SOLUTIONS = "author_solutions"
    DEPLOY_SOLUTIONS = "deploy_solutions"
    MANAGE_FOLDER_ACCESS = "manage_folder_access"


ALL_FOLDER_PERMISSIONS = frozenset(FOLDER_PERMISSION_CODENAMES)
OWNER_PERMISSIONS = ALL_FOLDER_PERMISSIONS - {Action.MANAGE_FOLDER_ACCESS}

TENANT_ADMIN_PERMISSION = "portal.administer_tenant"
TENANT_ADMIN_APP, TENANT_ADMIN_CODENAME = TENANT_ADMIN_PERMISSION.split(".")


def is_tenant_admin(user) -> bool:
    """Superusers, and users or groups given "Tenant administrator"."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or user.has_perm(TENANT_ADMIN_PERMISSION)


@cache
def _portal_permissions() -> dict[int, str]:
    """The portal's permission rows, id -> codename. They are made by
    migrations and never change while the portal runs; read once per
    process, again after ``migrate`` or ``flush`` (``clear_permission_cache``)
    or when a grant names an id not read yet."""
    return dict(
        Permission.objects.filter(content_type__app_label=TENANT_ADMIN_APP).values_list(
            "pk", "codename"
        )
    )


def clear_permission_cache(**kwargs) -> None:
    """After ``migrate`` (or ``flush``, which makes the rows again) read them
    anew at once, rather than on the next permission check: that check then
    costs what every other does."""
    _portal_permissions.cache_clear()
    _tenant_admin_permission.cache_clear()
    if kwargs.get("using", connection.alias) == connection.alias:
        _portal_permissions()


@cache
def _tenant_admin_permission() -> int | None:
    ids = {codename: pk for pk, codename in _portal_permissions().items()}
    return ids.get(TENANT_ADMIN_CODENAME)


def tenant_admin_permission_id() -> int:
    if _tenant_admin_permission() is None:
        clear_permission_cache()
    return _tenant_admin_permission() or 0


def within(path, folder_id) -> GreaterThan:
    """The subfolder rule, written once: a grant on the folder ``folder_id``
    applies to the folder whose path is ``path`` when that folder is it or
    lies below it. A path is the ids from the top down ("/2/3/4/"), so the
    granted folder's id stands in it between slashes: a condition on the
    grant's own row, with no join to the folder table whatever its size.
    Both arguments are expressions (``F``, ``OuterRef``) or values."""
    path = path if hasattr(path, "resolve_expression") else Value(path)
    folder_id = folder_id if hasattr(folder_id, "resolve_expression") else Value(folder_id)
    return GreaterThan(
        StrIndex(path, Concat(Value("/"), Cast(folder_id, CharField()), Value("/"))), 0
    )


def _granted_codenames(user, folder: Folder) -> frozenset[str]:
    """Codenames granted to the user, directly or through groups, on the
    folder or any ancestor (``within``), and ``administer_tenant`` if the
    user holds it (directly or through a group), which applies to every
    folder: one query. Permission ids only (no join to the permission and
    content type tables); ``_portal_permissions`` names them."""
    admin = tenant_admin_permission_id()
    on_folder = within(folder.path, F("content_object_id"))
    ids = (
        FolderUserGrant.objects.filter(on_folder, user_id=user.pk)
        .values_list("permission_id", flat=True)
        .union(
            FolderGroupGrant.objects.filter(on_folder, group__user=user.pk).values_list(
                "permission_id", flat=True
            ),
            get_user_model()
            .user_permissions.through.objects.filter(user_id=user.pk, permission_id=admin)
            .values_list("permission_id", flat=True),
            Group.permissions.through.objects.filter(
                group__user=user.pk, permission_id=admin
            ).values_list("permission_id", flat=True),
            all=True,
        )
    )
    return codenames(set(ids))


def codenames(ids: set[int]) -> frozenset[str]:
    """The codenames of portal permission ids (unknown ids ignored)."""
    names = _portal_permissions()
    if any(pk not in names for pk in ids):
        clear_permission_cache()
        names = _portal_permissions()
    return frozenset(names[pk] for pk in ids if pk in names)


def folder_permissions(
    user, folder: Folder, *, granted: frozenset[str] | None = None
) -> frozenset[str]:
    """Every permission codename the user holds in the folder (empty: cannot
    see it). ``granted``: the user's grants there, when the caller read them
    with the folder (``runtime.connection_for_use``)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    if folder.is_personal:
        return OWNER_PERMISSIONS if folder.owner_id == user.pk else frozenset()
    if user.is_superuser:
        return ALL_FOLDER_PERMISSIONS
    if granted is None:
        granted = _granted_codenames(user, folder)
    if TENANT_ADMIN_CODENAME in granted:
        return ALL_FOLDER_PERMISSIONS
    if _withheld_by_governance(granted):
        granted = granted - {Action.CREATE_CONNECTIONS}
    return granted


# The refusal when governance, not the role, withholds Connections - Create:
# the same words on the pages and in the API's 403.
GOVERNANCE_CREATE_REFUSED = (
    "The tenant's governance setting allows only administrators to create connections "
    "in shared folders. Create this connection in your personal workspace instead."
)


class GovernanceRefusal(PermissionDenied):
    """Connections - Create refused by the tenant's governance setting (the
    user's role has it): pages point to the user's personal workspace."""

    def __init__(self, message: str = GOVERNANCE_CREATE_REFUSED):
        super().__init__(message)


def _withheld_by_governance(granted: frozenset[str]) -> bool:
    """Whether governance takes Connections - Create from these grants (on
    a shared folder, held by a tenant administrator or superuser: never)."""
    return (
        Action.CREATE_CONNECTIONS in granted
        and Action.MANAGE_FOLDER_ACCESS not in granted
        and TENANT_ADMIN_CODENAME not in granted
        and not TenantSettings.load().allow_shared_connection_creation
    )


def withheld_by_governance(user, folder: Folder) -> bool:
    """Whether the user's role gives Connections - Create in this shared
    folder but governance withholds it. Asked only where the user lacks it
    (two queries: the grants and the setting)."""
    if folder.is_personal or not getattr(user, "is_authenticated", False):
        return False
    if not user.is_active or user.is_superuser:
        return False
    return _withheld_by_governance(_granted_codenames(user, folder))


def can(user, action: Action | str, folder: Folder) -> bool:
    perms = folder_permissions(user, folder)
    if action == Action.VIEW_FOLDER:
        return bool(perms)
    return action in perms


def visible_folders(user) -> FolderQuerySet:
    """Folders the user may open, in tree order, in one query (two for a
    tenant administrator, whose role is read once per request)."""
    return folders_where(user, Action.VIEW_FOLDER)


def folders_where(user, action: Action) -> FolderQuerySet:
    """The folders where the user may do ``action`` (``VIEW_FOLDER``: open
    them), the rule of ``folder_permissions`` as one query, for lists (e.g.
    ``Connection.objects.visible_to``, which asks it for Connections - View):
    their own personal workspace (every action but managing access); every
    shared folder for tenant administrators; a shared folder on or below
    one where a role with the permission was given to the user or one of
    their groups. Not for Connections - Create, which governance may
    withhold: ask ``can`` per folder."""
    if action == Action.CREATE_CONNECTIONS:
        raise ValueError("Governance may withhold Connections - Create: ask can() per folder.")
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Folder.objects.none()
    own = Q(owner=user) if action != Action.MANAGE_FOLDER_ACCESS else Q(pk__in=[])
    if is_tenant_admin(user):
        return Folder.objects.filter(Q(kind=Folder.Kind.SHARED) | own)
    user_grants = FolderUserGrant.objects.filter(user=user)
    group_grants = FolderGroupGrant.objects.filter(group__user=user)
    if action != Action.VIEW_FOLDER:
        permission = _permission_id(action)
        user_grants = user_grants.filter(permission_id=permission)
        group_grants = group_grants.filter(permission_id=permission)
    under_a_grant = Q(
        Exists(user_grants.filter(within(OuterRef("path"), F("content_object_id"))))
    ) | Q(Exists(group_grants.filter(within(OuterRef("path"), F("content_object_id")))))
    return Folder.objects.filter(own | (under_a_grant & Q(kind=Folder.Kind.SHARED)))


def _permission_id(codename: str) -> int:
    """The id of a portal permission (read once per process, as the grants'
    codenames are; 0, which no grant names, for one that does not exist)."""
    ids = {name: pk for pk, name in _portal_permissions().items()}
    if codename not in ids:
        clear_permission_cache()
        ids = {name: pk for pk, name in _portal_permissions().items()}
    return ids.get(codename, 0)


SOLUTIONS_ACTIONS = (Action.VIEW_SOLUTIONS, Action.AUTHOR_SOLUTIONS, Action.DEPLOY_SOLUTIONS)


def may_use_solutions(user) -> bool:
    """Whether the user holds any Solutions permission in some folder (the
    Solutions section's link; each of its pages asks again). Everyone's own
    workspace answers at the first query."""
    return any(folders_where(user, action).exists() for action in SOLUTIONS_ACTIONS)


def audit_scope(user) -> Q | None:
    """Which audit records the user may read: all of them for tenant
    administrators; for folder administrators (Folder access - Manage), the
    records of the folders they administer and of the folders below; None
    for anyone else (the audit log is refused)."""
    if is_tenant_admin(user):
        return Q()
    administered = folders_where(user, Action.MANAGE_FOLDER_ACCESS)
    if not administered.exists():
        return None
    return Q(folder_id__in=administered.values("pk"))


def listable_personal_workspaces(user) -> FolderQuerySet:
    """Tenant administrators may list every personal workspace (not open them)."""
    if not is_tenant_admin(user):
        return Folder.objects.none()
    return Folder.objects.personal().select_related("owner").order_by("name")


def get_folder_or_404(user, folder_id: int) -> Folder:
    folder, _ = folder_for(user, folder_id, Action.VIEW_FOLDER)
    return folder


def folder_for(user, folder_id: int, action: Action) -> tuple[Folder, frozenset[str]]:
    """The folder and the user's permissions in it, computed once: 404 if the
    user cannot see the folder, 403 if the action is not allowed there."""
    try:
        folder = Folder.objects.get(pk=folder_id)
    except Folder.DoesNotExist:
        raise Http404("No such folder.") from None
    return folder, require(user, action, folder)


def require(
    user, action: Action, folder: Folder, *, granted: frozenset[str] | None = None
) -> frozenset[str]:
    """Raise 404 if the folder is invisible, 403 if the action is not allowed;
    return the user's permissions in the folder for the caller's further use.
    ``granted`` as for ``folder_permissions``."""
    perms = folder_permissions(user, folder, granted=granted)
    if not perms:
        raise Http404("No such folder.")
    if action != Action.VIEW_FOLDER and action not in perms:
        if action == Action.CREATE_CONNECTIONS and withheld_by_governance(user, folder):
            raise GovernanceRefusal()
        raise PermissionDenied(_lacking(action))
    return perms


def _lacking(action: Action) -> str:
    return f"You do not have {permission_label(action)} in this folder."


def require_connections_visible(perms: frozenset[str]) -> None:
    """A folder's connections are seen with Connections - View: without it
    (in a folder the user may open, ``perms`` being theirs there) a
    connection answers as one that does not exist, 404."""
    if Action.VIEW_CONNECTIONS not in perms:
        raise Http404("No such connection.")


def require_on_connection(perms: frozenset[str], action: Action) -> None:
    """403, naming the permission missing, when the user may see a
    connection (``require_connections_visible``) but not do ``action`` on it."""
    if action not in perms:
        raise PermissionDenied(_lacking(action))


# Retrying a job's webhook delivery and replaying an event as a new job
# start work for a process: Processes - Manage, wherever they are asked (the
# trigger's page, the process's page, the API).
RERUN_JOBS = Action.MANAGE_PROCESSES


def require_tenant_admin(user) -> None:
    if not is_tenant_admin(user):
        raise PermissionDenied("Only tenant administrators may do this.")


# Changing a connection's fields checks them with the stored credential,
# which goes to the address they name: Edit alone must not be a way to send
# a secret elsewhere. The same words on the pages and in the API's 403.
FIELDS_NEED_USE = (
    "Changing the connection fields checks them with the stored credential, which goes to "
    "the address they name: that needs Connections - Use on this folder as well as Edit. "
    "Ask a folder administrator, or change only the name, description or polling interval."
)


def may_change_fields(user, folder: Folder) -> bool:
    """Whether the user may change the connection fields of a connection in
    the folder: Connections - Edit and Use (as running a check needs)."""
    perms = folder_permissions(user, folder)
    return Action.EDIT_CONNECTIONS in perms and Action.USE_CONNECTIONS in perms


def require_may_change_fields(user, folder: Folder) -> None:
    if not may_change_fields(user, folder):
        raise PermissionDenied(FIELDS_NEED_USE)


# --- Folder settings: rename, move, delete -------------------------------

MANAGE_FOLDER_REFUSED_TOP = (
    "Only tenant administrators may rename, move or delete a top-level folder."
)
MOVE_TO_TOP_REFUSED = "Only tenant administrators may move a folder to the top level."


def may_manage_folder(user, folder: Folder) -> bool:
    """Whether the user may rename, move or delete a shared folder: whoever
    may create it where it stands. A top-level folder is made by tenant
    administrators only (Tenant > Folders), a subfolder by those who hold
    Folder - Manage access on its parent (its Subfolders tab), so the same
    people change or remove it; a folder administrator given the role on
    the folder itself manages its access and contents, not its existence.
    Tenant administrators hold every permission on every shared folder,
    hence may everywhere. Personal workspaces have no settings: never."""
    if folder.is_personal:
        return False
    if folder.parent_id is None:
        return is_tenant_admin(user)
    return can(user, Action.MANAGE_FOLDER_ACCESS, folder.parent)


def may_move_folder_to(user, folder: Folder, parent: Folder | None) -> bool:
    """Whether the user may move ``folder`` under ``parent`` (None: the top
    level): they may manage the folder (``may_manage_folder``) and could
    create it at the destination: Folder - Manage access there, or, for the
    top level, be a tenant administrator. Nobody holds it in a personal
    workspace, so none is a destination."""
    if not may_manage_folder(user, folder):
        return False
    if parent is None:
        return is_tenant_admin(user)
    return can(user, Action.MANAGE_FOLDER_ACCESS, parent)


def require_may_manage_folder(user, folder: Folder) -> None:
    """403, saying who may, unless ``may_manage_folder``."""
    if not may_manage_folder(user, folder):
        raise PermissionDenied(manage_folder_refusal(folder))


def require_may_move_folder_to(user, folder: Folder, parent: Folder | None) -> None:
    """403, saying who may, unless ``may_move_folder_to``."""
    require_may_manage_folder(user, folder)
    if not may_move_folder_to(user, folder, parent):
        if parent is None:
            raise PermissionDenied(MOVE_TO_TOP_REFUSED)
        raise PermissionDenied(f"You do not have Folder - Manage access in {parent.name}.")


def manage_folder_refusal(folder: Folder) -> str:
    """Who may rename, move or delete the folder, as a refusal says it."""
    if folder.parent_id is None:
        return MANAGE_FOLDER_REFUSED_TOP
    return (
        f"Renaming, moving or deleting {folder.name} needs Folder - Manage access "
        f"in {folder.parent.name}, the folder it is in."
    )


def folder_move_destinations(user) -> FolderQuerySet:
    """The shared folders the user could move a folder into (Folder - Manage
    access there), in tree order: one query."""
    return folders_where(user, Action.MANAGE_FOLDER_ACCESS).shared().order_by("path")


# --- API keys --------------------------------------------------------------

MANAGE_KEYS_REFUSED = "You may not manage this account's API keys."


def may_manage_keys_of(actor, owner) -> bool:
    """People manage their own keys; tenant administrators those of robots."""
    if actor.pk == owner.pk:
        return not hasattr(owner, "robot")
    return is_tenant_admin(actor) and hasattr(owner, "robot")


def require_may_manage_keys_of(actor, owner) -> None:
    if not may_manage_keys_of(actor, owner):
        raise PermissionDenied(MANAGE_KEYS_REFUSED)


def permission_label(codename: str) -> str:
    return dict(FOLDER_PERMISSIONS).get(codename, codename)


# --- Keeping guardian's grants in step with role assignments --------------


@transaction.atomic
def sync_grants(*, folder_id: int, user_id: int | None = None, group_id: int | None = None) -> None:
    """Make the guardian rows of one principal on one folder equal the union
    of the permissions of the roles assigned to it there."""
    if user_id is not None:
        assignments = RoleAssignment.objects.filter(folder_id=folder_id, user_id=user_id)
        grants = FolderUserGrant.objects.filter(content_object_id=folder_id, user_id=user_id)
        principal = {"user_id": user_id}
        model = FolderUserGrant
    else:
        assignments = RoleAssignment.objects.filter(folder_id=folder_id, group_id=group_id)
        grants = FolderGroupGrant.objects.filter(content_object_id=folder_id, group_id=group_id)
        principal = {"group_id": group_id}
        model = FolderGroupGrant
    wanted = set(
        Permission.objects.filter(role__assignments__in=assignments)
        .values_list("pk", flat=True)
        .distinct()
    )
    present = set(grants.values_list("permission_id", flat=True))
    grants.filter(permission_id__in=present - wanted).delete()
    model.objects.bulk_create(
        [
            model(content_object_id=folder_id, permission_id=pk, **principal)
            for pk in wanted - present
        ]
    )


def sync_role(role: Role) -> None:
    """A role's permissions changed: bring every grant made through it in step."""
    for folder_id, user_id, group_id in role.assignments.values_list(
        "folder_id", "user_id", "group_id"
    ):
        sync_grants(folder_id=folder_id, user_id=user_id, group_id=group_id)


def folder_administrators(folder: Folder):
    """Users who administer a shared folder (Folder - Manage access granted
    on it or an ancestor, directly or through a group): one query."""
    if folder.is_personal:
        return get_user_model().objects.none()
    direct = FolderUserGrant.objects.filter(
        within(folder.path, F("content_object_id")),
        permission__codename=Action.MANAGE_FOLDER_ACCESS,
    ).values("user_id")
    through_groups = FolderGroupGrant.objects.filter(
        within(folder.path, F("content_object_id")),
        permission__codename=Action.MANAGE_FOLDER_ACCESS,
    ).values("group_id")
    return (
        get_user_model()
        .objects.filter(Q(pk__in=direct) | Q(groups__in=through_groups), is_active=True)
        .distinct()
    )
