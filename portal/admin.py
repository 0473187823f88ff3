"""Admin for the portal app. Every change made here goes through the domain
functions that the pages use (``portal.actions``, ``portal.api_keys``), so it
is validated and audited alike; what has no such function is read-only here
and changed on the portal's pages."""

from django import forms
from django.contrib import admin

from portal import actions, api_keys
from portal.models import (
    ApiKey,
    AuditRecord,
    Folder,
    Invitation,
    RobotAccount,
    Role,
    RoleAssignment,
    TenantSettings,
    WorkerHeartbeat,
)


class RoleAssignmentInline(admin.TabularInline):
    """Roles are given and taken on the folder's Access page (audited)."""

    model = RoleAssignment
    extra = 0
    can_delete = False
    fields = ["role", "user", "group", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class FolderAdminForm(forms.ModelForm):
    """The admin's folder form asks the rules the pages ask
    (``actions.check_folder_place``): its messages, next to the field."""

    class Meta:
        model = Folder
        fields = ["name", "description", "kind", "parent", "owner"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors:
            folder = self.instance
            folder.kind = cleaned.get("kind", folder.kind)
            actions.check_folder_place(
                folder, name=cleaned.get("name", ""), parent=cleaned.get("parent")
            )
        return cleaned


@admin.register(Folder)
class FolderAdmin(admin.ModelAdmin):
    form = FolderAdminForm
    list_display = ["name", "kind", "parent", "owner", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "owner__username"]
    list_select_related = ["parent", "owner"]
    readonly_fields = ["path", "created_at"]
    raw_id_fields = ["parent", "owner"]
    inlines = [RoleAssignmentInline]

    def save_model(self, request, obj, form, change) -> None:
        actions.save_folder(obj, actor=request.user)

    def delete_model(self, request, obj) -> None:
        actions.delete_folder(obj, actor=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for folder in queryset:
            actions.delete_folder(folder, actor=request.user)


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "is_builtin"]
    filter_horizontal = ["permissions"]
    readonly_fields = ["is_builtin"]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    list_display = ["folder", "role", "user", "group", "created_at"]
    list_filter = ["role"]
    search_fields = ["folder__name", "user__username", "group__name"]
    list_select_related = ["folder", "role", "user", "group"]
    raw_id_fields = ["folder", "user", "created_by"]

    # Given on the folder's Access page; taken here or there, audited alike.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj) -> None:
        actions.remove_assignment(assignment=obj, actor=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for assignment in queryset.select_related("role", "user", "group"):
            actions.remove_assignment(assignment=assignment, actor=request.user)


@admin.register(TenantSettings)
class TenantSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "allow_shared_connection_creation", "updated_at"]
    readonly_fields = ["updated_at", "updated_by"]

    def has_add_permission(self, request) -> bool:
        return not TenantSettings.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        actions.set_governance(
            allow_shared_connection_creation=obj.allow_shared_connection_creation,
            min_polling_interval_seconds=obj.min_polling_interval_seconds,
            read_only=obj.read_only,
            changed_by=request.user,
        )


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "status", "invited_by", "created_at", "expires_at"]
    search_fields = ["email"]
    # The token digest is never shown; the token itself is never stored.
    exclude = ["token_digest"]
    readonly_fields = ["created_at", "accepted_at", "accepted_by", "invited_by"]

    def has_add_permission(self, request) -> bool:
        return False  # invitations are sent from the portal, which e-mails the link

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # revoked on the portal's Invitations page (audited)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "beat_at"]


@admin.register(RobotAccount)
class RobotAccountAdmin(admin.ModelAdmin):
    list_display = ["__str__", "description", "created_by", "created_at"]
    search_fields = ["user__username"]
    readonly_fields = ["user", "created_by", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # made on the portal's Robot accounts page


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made on the portal, where the key is shown once; here they
    can be looked at and revoked (set "revoked at"). The digest is never shown."""

    list_display = ["name", "hint", "user", "folder", "status", "expires_at", "last_used_at"]
    search_fields = ["name", "user__username", "hint"]
    list_select_related = ["user", "folder"]
    exclude = ["digest"]
    readonly_fields = [
        "user",
        "name",
        "hint",
        "folder",
        "expires_at",
        "created_at",
        "created_by",
        "last_used_at",
        "last_used_ip",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, never deleted: its audit records keep naming it

    def save_model(self, request, obj, form, change) -> None:
        if "revoked_at" in form.changed_data and obj.revoked_at:
            api_keys.revoke(
                ApiKey.objects.select_related("user").get(pk=obj.pk), actor=request.user
            )


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    """Append-only: nothing here changes or removes a record."""

    list_display = ["created_at", "action", "actor_name", "api_key_name", "target_name", "job_id"]
    list_filter = ["action"]
    search_fields = ["actor_name", "api_key_name", "target_name", "job_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
