"""Admin for connections. Credentials are not registered: the admin never
shows, edits or exports secret material; replace a secret on the portal."""

from django.contrib import admin

from connections.models import Connection, ConnectionEvent, HealthCheck, SandboxToken


class ConnectionEventInline(admin.TabularInline):
    model = ConnectionEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "actor", "detail"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ["name", "connector_key", "folder", "state", "is_enabled", "updated_at"]
    list_filter = ["state", "is_enabled", "connector_key"]
    search_fields = ["name", "account_identity", "folder__name"]
    list_select_related = ["folder"]
    raw_id_fields = ["folder", "created_by", "authenticated_by"]
    readonly_fields = [
        "connector_key",
        "auth_type",
        "state",
        "account_identity",
        "created_at",
        "updated_at",
        "last_checked_at",
        "last_success_at",
        "consecutive_failures",
        "last_error",
    ]
    inlines = [ConnectionEventInline]

    def has_add_permission(self, request) -> bool:
        return False  # connections are made through the wizard, which checks the secret


@admin.register(HealthCheck)
class HealthCheckAdmin(admin.ModelAdmin):
    list_display = ["connection", "checked_at", "ok", "status_code", "latency_ms"]
    list_filter = ["ok"]
    raw_id_fields = ["connection"]


@admin.register(SandboxToken)
class SandboxTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "hint", "created_at", "revoked_at"]
    exclude = ["digest"]
    readonly_fields = ["hint", "created_at", "last_used_at"]
    raw_id_fields = ["user"]
