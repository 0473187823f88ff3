from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path, re_path

from connections.api.site import api, unknown_endpoint
from portal.views import (
    api_keys,
    audit,
    folder_settings,
    folders,
    invitations,
    probes,
    robots,
    shell,
    tenant,
)

# The admin signs in through allauth, so its second factor applies there too.
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    path("", folders.home, name="home"),
    path("folders/<int:folder_id>/", folders.folder_detail, name="folder_detail"),
    path(
        "folders/<int:folder_id>/subfolders/", folders.folder_subfolders, name="folder_subfolders"
    ),
    path("folders/<int:folder_id>/access/", folders.folder_access, name="folder_access"),
    path(
        "folders/<int:folder_id>/settings/",
        folder_settings.folder_settings,
        name="folder_settings",
    ),
    path(
        "folders/<int:folder_id>/settings/rename/",
        folder_settings.folder_rename,
        name="folder_rename",
    ),
    path("folders/<int:folder_id>/settings/move/", folder_settings.folder_move, name="folder_move"),
    path(
        "folders/<int:folder_id>/settings/delete/",
        folder_settings.folder_delete,
        name="folder_delete",
    ),
    path(
        "folders/<int:folder_id>/access/<int:assignment_id>/remove/",
        folders.assignment_remove,
        name="assignment_remove",
    ),
    path("tenant/", tenant.governance, name="tenant_governance"),
    path("tenant/folders/", tenant.folders, name="tenant_folders"),
    path("tenant/invitations/", tenant.invitations, name="tenant_invitations"),
    path(
        "tenant/invitations/<int:invitation_id>/revoke/",
        tenant.invitation_revoke,
        name="invitation_revoke",
    ),
    path("tenant/workspaces/", tenant.workspaces, name="tenant_workspaces"),
    path("tenant/robots/", robots.robots, name="tenant_robots"),
    path("tenant/robots/<int:robot_id>/", robots.robot_detail, name="tenant_robot"),
    path(
        "tenant/robots/<int:robot_id>/keys/<int:key_id>/revoke/",
        robots.robot_key_revoke,
        name="tenant_robot_key_revoke",
    ),
    path("audit/", audit.audit_log_page, name="audit_log"),
    path("audit/export.csv", audit.audit_log_csv, name="audit_log_csv"),
    path("account/api-keys/", api_keys.own_keys, name="api_keys"),
    path("account/api-keys/<int:key_id>/revoke/", api_keys.own_key_revoke, name="api_key_revoke"),
    path("invitations/<str:token>/", invitations.accept, name="invitation_accept"),
    path("", include("connections.urls")),
    path("", include("solutions.urls")),
    path("api/v1/", api.urls),
    # Any other path under api/v1/, whatever characters it holds (a line break too).
    re_path(r"^api/v1/(?P<rest>[\s\S]*)\Z", unknown_endpoint),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    # Pages that do not link an icon themselves (the admin's) ask for this one.
    path("favicon.ico", shell.favicon),
]
