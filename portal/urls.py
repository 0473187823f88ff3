from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from connections.api.site import api
from portal.views import folders, invitations, probes, shell, tenant

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
    path("invitations/<str:token>/", invitations.accept, name="invitation_accept"),
    path("", include("connections.urls")),
    path("api/v1/", api.urls),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    # Pages that do not link an icon themselves (the admin's) ask for this one.
    path("favicon.ico", shell.favicon),
]
