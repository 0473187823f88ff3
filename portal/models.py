"""Folders, roles, role assignments and tenant-wide settings.

A folder knows its ancestors through ``path`` ("/1/4/9/"), so inheritance
questions ("does a grant on an ancestor apply here?") need no recursion and
listing what a user may see costs a constant number of queries.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Concat, Lower, Substr
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

# The folder permissions, in the order the pages list them. Codenames are what
# roles, guardian grants and the permission module speak.
FOLDER_PERMISSIONS: list[tuple[str, str]] = [
    ("view_connections", "Connections - View"),
    ("use_connections", "Connections - Use"),
    ("create_connections", "Connections - Create"),
    ("edit_connections", "Connections - Edit"),
    ("delete_connections", "Connections - Delete"),
    ("view_triggers", "Triggers - View"),
    ("manage_triggers", "Triggers - Manage"),
    ("view_processes", "Processes - View"),
    ("manage_processes", "Processes - Manage"),
    ("view_jobs", "Jobs - View"),
    ("view_solutions", "Solutions - View"),
    ("author_solutions", "Solutions - Author"),
    ("deploy_solutions", "Solutions - Deploy"),
    ("manage_folder_access", "Folder - Manage access"),
]
FOLDER_PERMISSION_CODENAMES = frozenset(code for code, _ in FOLDER_PERMISSIONS)

# Bounds of every polling interval, the tenant-wide minimum included.
MIN_POLLING_INTERVAL_SECONDS = 60
MAX_POLLING_INTERVAL_SECONDS = 24 * 60 * 60


class FolderQuerySet(models.QuerySet):
    def shared(self) -> FolderQuerySet:
        return self.filter(kind=Folder.Kind.SHARED)

    def personal(self) -> FolderQuerySet:
        return self.filter(kind=Folder.Kind.PERSONAL)


class Folder(models.Model):
    class Kind(models.TextChoices):
        SHARED = "shared", "Shared folder"
        PERSONAL = "personal", "Personal workspace"

    name = models.CharField(max_length=120)
    description = models.CharField(max_length=500, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SHARED)
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="personal_workspace",
        help_text="Set for personal workspaces only.",
    )
    # Materialised path of primary keys, "/<root>/.../<self>/". Maintained by save().
    path = models.CharField(max_length=1000, editable=False, db_index=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = FolderQuerySet.as_manager()

    class Meta:
        ordering = ["path"]
        permissions = FOLDER_PERMISSIONS
        default_permissions = ("add", "change", "delete", "view")
        constraints = [
            models.CheckConstraint(
                name="folder_personal_has_owner_and_no_parent",
                condition=(
                    Q(kind="shared", owner__isnull=True)
                    | Q(kind="personal", owner__isnull=False, parent__isnull=True)
                ),
            ),
            # Sibling names differ other than by case, as the pages check
            # (actions.check_folder_place); the database holds it for two
            # requests at once.
            models.UniqueConstraint(Lower("name"), "parent", name="folder_unique_name_in_parent"),
            models.UniqueConstraint(
                Lower("name"),
                condition=Q(parent__isnull=True, kind="shared"),
                name="folder_unique_top_level_name",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        """Paths come from the rows as stored, locked until the save commits,
        never from copies in memory: a folder made or moved under a parent
        that another request moves meanwhile still lands under it, and a
        move rewrites the subtree from where it really was."""
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            if "parent" not in update_fields:
                super().save(*args, **kwargs)  # the place is not what changes
                return
            kwargs["update_fields"] = {*update_fields, "path"}
        with transaction.atomic():
            parent_path = self._stored_path(self.parent_id) if self.parent_id else "/"
            if self._state.adding and self.pk is None:
                super().save(*args, **kwargs)
                self.path = f"{parent_path}{self.pk}/"
                super().save(update_fields=["path"])
                return
            old_path = None if self._state.adding else self._stored_path(self.pk)
            if old_path and parent_path.startswith(old_path):
                # ``actions.check_folder_place`` says so first; this holds
                # when the parent moved meanwhile.
                raise ValidationError({"parent": "A folder cannot be moved into itself."})
            self.path = f"{parent_path}{self.pk}/"
            super().save(*args, **kwargs)
            if old_path and old_path != self.path:
                # Moved: rewrite the subtree's paths in one UPDATE.
                Folder.objects.filter(path__startswith=old_path).exclude(pk=self.pk).update(
                    path=Concat(models.Value(self.path), Substr("path", len(old_path) + 1))
                )

    @staticmethod
    def _stored_path(pk: int) -> str:
        return Folder.objects.select_for_update().values_list("path", flat=True).get(pk=pk)

    @property
    def is_personal(self) -> bool:
        return self.kind == self.Kind.PERSONAL

    @property
    def ancestor_ids(self) -> list[int]:
        """Primary keys from the root down to this folder, itself included."""
        return [int(part) for part in self.path.strip("/").split("/") if part]


class FolderUserGrant(UserObjectPermissionBase):
    """django-guardian object permission of a user on a folder (direct FK)."""

    content_object = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="+")

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class FolderGroupGrant(GroupObjectPermissionBase):
    """django-guardian object permission of a group on a folder (direct FK)."""

    content_object = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="+")

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class Role(models.Model):
    """A named set of folder permissions, given to users or groups on folders."""

    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=300, blank=True)
    permissions = models.ManyToManyField(
        Permission,
        blank=True,
        limit_choices_to={
            "content_type__app_label": "portal",
            "content_type__model": "folder",
            "codename__in": sorted(FOLDER_PERMISSION_CODENAMES),
        },
    )
    is_builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RoleAssignmentQuerySet(models.QuerySet):
    def applying_to(self, folder: Folder) -> RoleAssignmentQuerySet:
        """The assignments that reach ``folder``: made on it or on a folder above it."""
        return self.filter(folder_id__in=folder.ancestor_ids)


class RoleAssignment(models.Model):
    """A user or a group holds a role on a folder and all its subfolders."""

    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="assignments")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_assignments",
    )
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, related_name="role_assignments"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = RoleAssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["folder__path", "role__name"]
        constraints = [
            models.CheckConstraint(
                name="assignment_user_xor_group",
                condition=(
                    Q(user__isnull=False, group__isnull=True)
                    | Q(user__isnull=True, group__isnull=False)
                ),
            ),
            models.UniqueConstraint(
                fields=["folder", "role", "user"],
                condition=Q(user__isnull=False),
                name="assignment_unique_user_role",
            ),
            models.UniqueConstraint(
                fields=["folder", "role", "group"],
                condition=Q(group__isnull=False),
                name="assignment_unique_group_role",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.principal_name} is {self.role} on {self.folder}"

    @property
    def principal_name(self) -> str:
        if self.user_id:
            return self.user.get_username()
        return f"group {self.group.name}"


class TenantSettings(models.Model):
    """Tenant-wide settings and governance (one row)."""

    allow_shared_connection_creation = models.BooleanField(
        "Allow users to create connections in shared folders",
        default=True,
        help_text="When off, only folder administrators and tenant administrators create "
        "connections in shared folders; everyone may still create them in their personal "
        "workspace.",
    )
    min_polling_interval_seconds = models.PositiveIntegerField(
        "Minimum polling interval (seconds)",
        default=MIN_POLLING_INTERVAL_SECONDS,
        validators=[
            MinValueValidator(MIN_POLLING_INTERVAL_SECONDS),
            MaxValueValidator(MAX_POLLING_INTERVAL_SECONDS),
        ],
        help_text="No connection is checked (or, later, polled for events) more often than "
        "this. Connections with a shorter interval are checked at this pace.",
    )
    read_only = models.BooleanField(
        "Read-only API and command-line client",
        default=False,
        help_text="For public sector tenants: the runtime API and portal-cli can read "
        "connections but not change, check or add them; connections are managed in these "
        "pages only.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "tenant settings"
        verbose_name_plural = "tenant settings"
        permissions = [("administer_tenant", "Tenant administrator")]

    def __str__(self) -> str:
        return "Tenant settings"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> TenantSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class InvitationQuerySet(models.QuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )


class Invitation(models.Model):
    """An administrator's invitation to sign up; only the token's digest is stored."""

    email = models.EmailField()
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="accepted_invitation",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation for {self.email}"

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, *, email: str, invited_by) -> tuple[Invitation, str]:
        """Create an invitation; returns it with the plain token (shown or sent once)."""
        token = secrets.token_urlsafe(32)
        invitation = cls.objects.create(
            email=email,
            token_digest=cls.digest(token),
            invited_by=invited_by,
            expires_at=timezone.now() + timedelta(days=settings.PORTAL_INVITATION_DAYS),
        )
        return invitation, token

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "Accepted"
        if self.revoked_at:
            return "Revoked"
        if self.expires_at <= timezone.now():
            return "Expired"
        return "Pending"


class WorkerHeartbeat(models.Model):
    """Last time a Celery worker ran the heartbeat task (one row)."""

    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.hostname} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class RobotAccountQuerySet(models.QuerySet):
    def with_active_key_counts(self) -> RobotAccountQuerySet:
        """Each robot with ``active_keys``: its keys neither revoked nor expired."""
        active = Q(user__api_keys__revoked_at__isnull=True) & Q(
            user__api_keys__expires_at__gt=timezone.now()
        )
        return self.annotate(active_keys=models.Count("user__api_keys", filter=active))


class RobotAccount(models.Model):
    """A service account for automations: a user that cannot sign in to the
    pages (no usable password) and acts through API keys only. Folder roles
    are given to it like to anyone else."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="robot"
    )
    description = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RobotAccountQuerySet.as_manager()

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return self.user.get_username()


class ApiKey(models.Model):
    """A key that authenticates the runtime API as its user (a person or a
    robot account). Only its SHA-256 digest is stored: verifying a key is one
    lookup on a unique index. Optionally limited to one folder and the
    folders below it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=80)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters after the key's prefix, to tell keys apart.
    hint = models.CharField(max_length=12, editable=False)
    folder = models.ForeignKey(
        Folder,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="When set, the key acts only in this folder and the folders below it.",
    )
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "Revoked"
        if self.expires_at <= timezone.now():
            return "Expired"
        return "Active"


# An audit record's link to a user, key or folder: see AuditRecord.
AUDIT_LINK = {
    "null": True,
    "blank": True,
    "on_delete": models.DO_NOTHING,
    "db_constraint": False,
    "db_index": False,
    "related_name": "+",
}


class AuditRecord(models.Model):
    """Who did what, append-only. Names are copied so that a record stays
    readable after its user, key or object is gone. Never holds a secret.

    Every credential read writes one, so a record costs as little as it can:
    its links to the user, key and folder are plain columns with no
    database constraint (no check, and no lock on those rows, at every
    insert), kept as they were when the row is deleted; and only the
    indexes the audit pages read by."""

    class Action(models.TextChoices):
        CREDENTIALS_READ = "credentials.read", "Credentials read"
        API_KEY_CREATED = "api_key.created", "API key created"
        API_KEY_REVOKED = "api_key.revoked", "API key revoked"
        ROBOT_CREATED = "robot.created", "Robot account created"
        CONNECTION_CREATED = "connection.created", "Connection created"
        CONNECTION_EDITED = "connection.edited", "Connection edited"
        SECRET_REPLACED = "connection.secret_replaced", "Secret replaced"
        CLIENT_SECRET_REPLACED = "connection.client_secret_replaced", "Client secret replaced"
        CONNECTION_RECONNECTED = "connection.reconnected", "Connection reconnected"
        CONNECTION_DISABLED = "connection.disabled", "Connection disabled"
        CONNECTION_ENABLED = "connection.enabled", "Connection enabled"
        CONNECTION_DELETED = "connection.deleted", "Connection deleted"
        DEFAULT_SET = "connection.default_set", "Default connection set"
        DEFAULT_CLEARED = "connection.default_cleared", "Default connection cleared"
        CONNECTIONS_IMPORTED = "connections.imported", "Connections imported"
        CONNECTIONS_EXPORTED = "connections.exported", "Connections exported"
        ROLE_ASSIGNED = "role.assigned", "Role assigned"
        ROLE_REMOVED = "role.removed", "Role removed"
        GOVERNANCE_CHANGED = "tenant.governance_changed", "Governance changed"
        TENANT_SETTINGS_CHANGED = "tenant.settings_changed", "Tenant settings changed"
        FOLDER_CREATED = "folder.created", "Folder created"
        FOLDER_MOVED = "folder.moved", "Folder moved"
        FOLDER_RENAMED = "folder.renamed", "Folder renamed"
        FOLDER_DELETED = "folder.deleted", "Folder deleted"
        INVITATION_SENT = "invitation.sent", "Invitation sent"
        INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
        INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
        SIGN_IN_FAILED = "sign_in.failed", "Sign-in failed"
        LOCKED_OUT = "sign_in.locked_out", "Locked out"
        PROCESS_CREATED = "process.created", "Process created"
        PROCESS_EDITED = "process.edited", "Process edited"
        PROCESS_DELETED = "process.deleted", "Process deleted"
        TRIGGER_CREATED = "trigger.created", "Trigger created"
        TRIGGER_EDITED = "trigger.edited", "Trigger edited"
        TRIGGER_ENABLED = "trigger.enabled", "Trigger enabled"
        TRIGGER_DISABLED = "trigger.disabled", "Trigger disabled"
        TRIGGER_DELETED = "trigger.deleted", "Trigger deleted"
        AUDIT_PRUNED = "audit.pruned", "Audit records pruned"
        SOLUTION_CREATED = "solution.created", "Solution created"
        SOLUTION_EDITED = "solution.edited", "Solution components edited"
        SOLUTION_PUBLISHED = "solution.published", "Solution version published"
        SOLUTION_UPLOADED = "solution.uploaded", "Solution package uploaded"
        SOLUTION_DOWNLOADED = "solution.downloaded", "Solution package downloaded"
        SOLUTION_DEPLOYED = "solution.deployed", "Solution deployed"
        SOLUTION_DEPLOY_FAILED = "solution.deploy_failed", "Solution deployment rolled back"
        SOLUTION_UPGRADED = "solution.upgraded", "Solution deployment upgraded"
        SOLUTION_DEPLOYMENT_EDITED = "solution.deployment_edited", "Deployment configuration edited"
        SOLUTION_DEPLOYMENT_REMOVED = "solution.deployment_removed", "Solution deployment removed"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, **AUDIT_LINK)
    actor_name = models.CharField(max_length=150, blank=True)
    api_key = models.ForeignKey(ApiKey, **AUDIT_LINK)
    api_key_name = models.CharField(max_length=100, blank=True)
    folder = models.ForeignKey(Folder, **AUDIT_LINK)
    # What was acted on, e.g. ("connection", "42", "Salesforce production").
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=40, blank=True)
    target_name = models.CharField(max_length=200, blank=True)
    job_id = models.CharField(max_length=100, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["action", "-created_at"], name="audit_action"),
            models.Index(fields=["target_type", "target_id", "-created_at"], name="audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_name or 'System'}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Audit records are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit records are only deleted by the retention (prune_audit).")
