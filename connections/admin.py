"""Admin for connections. Credentials are not registered: the admin never
shows, edits or exports secret material; replace a secret on the portal."""

from django import forms
from django.contrib import admin
from oauth2_provider.models import get_application_model

from connections.actions import lifecycle
from connections.models import Connection, ConnectionEvent, HealthCheck, OAuthApp, SandboxToken
from connections.oauth_apps import set_portal_app


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

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # edited on the portal, which checks, records and audits each change

    def delete_model(self, request, obj) -> None:
        lifecycle.delete_connection(connection=obj, actor=request.user, delete_triggers=True)

    def delete_queryset(self, request, queryset) -> None:
        for connection in queryset:
            lifecycle.delete_connection(
                connection=connection, actor=request.user, delete_triggers=True
            )


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


class OAuthAppForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored secret.",
    )

    class Meta:
        model = OAuthApp
        fields = ["connector_key", "client_id"]


@admin.register(OAuthApp)
class OAuthAppAdmin(admin.ModelAdmin):
    """The portal's registered app per connector; the secret is never shown."""

    form = OAuthAppForm
    list_display = ["connector_key", "client_id", "updated_at"]
    search_fields = ["connector_key", "client_id"]

    def save_model(self, request, obj, form, change) -> None:
        secret = form.cleaned_data.get("client_secret") or None
        if not change and secret is None:
            secret = ""
        app = set_portal_app(obj.connector_key, client_id=obj.client_id, client_secret=secret)
        obj.pk = app.pk


# The Sandbox provider's apps (django-oauth-toolkit): the portal keeps its own
# app's client secret in the vault, so the provider's admin never shows it.
_Application = get_application_model()
if admin.site.is_registered(_Application):
    admin.site.unregister(_Application)


@admin.register(_Application)
class SandboxApplicationAdmin(admin.ModelAdmin):
    list_display = ["name", "client_id", "authorization_grant_type", "user"]
    search_fields = ["name", "client_id"]
    exclude = ["client_secret"]
    raw_id_fields = ["user"]
