from django.urls import path
from oauth2_provider import views as oauth2_views

from connections.views import (
    health,
    help_pages,
    listing,
    manage,
    oauth_views,
    processes,
    sandbox,
    transfer,
    triggers,
    wizard,
)

FOLDER = "folders/<int:folder_id>/connections/"
CONNECTION = FOLDER + "<int:connection_id>/"
TRIGGERS = CONNECTION + "triggers/"
TRIGGER = TRIGGERS + "<int:trigger_id>/"
PROCESSES = "folders/<int:folder_id>/processes/"
PROCESS = PROCESSES + "<int:process_id>/"

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
    path(CONNECTION + "check/", health.check_now, name="connection_check"),
    path(CONNECTION + "check/progress/", health.check_progress, name="connection_check_progress"),
    path(CONNECTION + "enabled/", manage.set_enabled, name="connection_set_enabled"),
    path(CONNECTION + "default/", manage.set_default, name="connection_set_default"),
    path(CONNECTION + "delete/", manage.delete, name="connection_delete"),
    path(CONNECTION + "reconnect/", oauth_views.reconnect, name="connection_reconnect"),
    path(
        CONNECTION + "client-secret/",
        oauth_views.replace_client_secret,
        name="connection_replace_client_secret",
    ),
    path(TRIGGERS, triggers.trigger_list, name="connection_triggers"),
    path(TRIGGERS + "add/", triggers.trigger_add, name="trigger_add"),
    path(TRIGGER, triggers.trigger_detail, name="trigger_detail"),
    path(TRIGGER + "edit/", triggers.trigger_edit, name="trigger_edit"),
    path(TRIGGER + "enabled/", triggers.trigger_set_enabled, name="trigger_set_enabled"),
    path(TRIGGER + "poll/", triggers.trigger_poll_now, name="trigger_poll_now"),
    path(TRIGGER + "delete/", triggers.trigger_delete, name="trigger_delete"),
    path(
        TRIGGER + "jobs/<int:job_id>/retry/",
        triggers.trigger_job_retry,
        name="trigger_job_retry",
    ),
    path(
        TRIGGER + "events/<int:event_id>/replay/",
        triggers.trigger_event_replay,
        name="trigger_event_replay",
    ),
    path(PROCESSES, processes.process_list, name="folder_processes"),
    path(PROCESSES + "add/", processes.process_add, name="process_add"),
    path(PROCESS, processes.process_detail, name="process_detail"),
    path(PROCESS + "edit/", processes.process_edit, name="process_edit"),
    path(PROCESS + "delete/", processes.process_delete, name="process_delete"),
    path(
        PROCESS + "signing-secret/",
        processes.process_replace_secret,
        name="process_replace_secret",
    ),
    path(
        PROCESS + "jobs/<int:job_id>/retry/",
        processes.process_job_retry,
        name="process_job_retry",
    ),
    path("tenant/health/", health.tenant_health, name="tenant_health"),
    path("tenant/transfer/", transfer.transfer, name="tenant_transfer"),
    path("tenant/transfer/export/", transfer.transfer_export, name="tenant_transfer_export"),
    path("tenant/transfer/upload/", transfer.transfer_upload, name="tenant_transfer_upload"),
    path("tenant/transfer/plan/", transfer.transfer_plan, name="tenant_transfer_plan"),
    path("tenant/transfer/confirm/", transfer.transfer_confirm, name="tenant_transfer_confirm"),
    path("help/troubleshooting/", help_pages.troubleshooting_guide, name="help_troubleshooting"),
    path("oauth/callback/", oauth_views.callback, name="oauth_callback"),
    path(
        "oauth/flows/<int:flow_id>/confirm/",
        oauth_views.confirm_identity,
        name="oauth_confirm_identity",
    ),
    path("oauth/flows/<int:flow_id>/cancel/", oauth_views.cancel_flow, name="oauth_flow_cancel"),
    path("sandbox/tokens/", sandbox.tokens, name="sandbox_tokens"),
    path(
        "sandbox/tokens/<int:token_id>/revoke/", sandbox.revoke_token, name="sandbox_token_revoke"
    ),
    path("sandbox/apps/", sandbox.apps, name="sandbox_apps"),
    path("sandbox/apps/<int:app_id>/delete/", sandbox.delete_app, name="sandbox_app_delete"),
    path("sandbox/api/me", sandbox.api_me, name="sandbox_api_me"),
    path("sandbox/api/records", sandbox.api_records, name="sandbox_api_records"),
    # The Sandbox OAuth 2.0 authorization server (django-oauth-toolkit).
    path(
        "sandbox/oauth/authorize/",
        sandbox.only_when_enabled(oauth2_views.AuthorizationView.as_view()),
        name="sandbox_oauth_authorize",
    ),
    path(
        "sandbox/oauth/token/",
        sandbox.only_when_enabled(oauth2_views.TokenView.as_view()),
        name="sandbox_oauth_token",
    ),
    path(
        "sandbox/oauth/revoke_token/",
        sandbox.only_when_enabled(oauth2_views.RevokeTokenView.as_view()),
        name="sandbox_oauth_revoke",
    ),
]
