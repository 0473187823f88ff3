from django.urls import path

from connections.views import listing, manage, sandbox, wizard

FOLDER = "folders/<int:folder_id>/connections/"
CONNECTION = FOLDER + "<int:connection_id>/"

urlpatterns = [
    path(FOLDER, listing.folder_connections, name="folder_connections"),
    path(FOLDER + "add/", wizard.choose_connector, name="connection_add"),
    path(FOLDER + "add/<str:connector_key>/", wizard.choose_auth_type, name="connection_add_auth"),
    path(
        FOLDER + "add/<str:connector_key>/<str:auth_type>/",
        wizard.connect,
        name="connection_add_details",
    ),
    path(CONNECTION, manage.detail, name="connection_detail"),
    path(CONNECTION + "edit/", manage.edit, name="connection_edit"),
    path(CONNECTION + "secret/", manage.replace_secret, name="connection_replace_secret"),
    path(CONNECTION + "check/", manage.check_now, name="connection_check"),
    path(CONNECTION + "enabled/", manage.set_enabled, name="connection_set_enabled"),
    path(CONNECTION + "delete/", manage.delete, name="connection_delete"),
    path("sandbox/tokens/", sandbox.tokens, name="sandbox_tokens"),
    path(
        "sandbox/tokens/<int:token_id>/revoke/", sandbox.revoke_token, name="sandbox_token_revoke"
    ),
    path("sandbox/api/me", sandbox.api_me, name="sandbox_api_me"),
]
