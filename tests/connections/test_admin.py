"""The admin shows connections but never their secret material."""

from django.contrib import admin
from django.urls import reverse

from connections.models import Credential
from tests.factories import ConnectionFactory

SECRET = "admin-visible-secret-never-1234"


def test_admin_pages_never_show_the_secret(client, tenant_admin):
    connection = ConnectionFactory(connector_key="github", name="Robot", secret={"token": SECRET})
    client.force_login(tenant_admin)
    pages = [
        reverse("admin:connections_connection_changelist"),
        reverse("admin:connections_connection_change", args=[connection.pk]),
        reverse("admin:connections_connection_changelist") + "?q=Robot",
        reverse("admin:connections_healthcheck_changelist"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert SECRET not in body
        assert Credential.objects.get().ciphertext not in body
    assert Credential not in admin.site._registry
    assert SECRET not in repr(connection.credential) + str(connection.credential)


def test_sandbox_provider_admin_never_shows_the_client_secret(client, tenant_admin, settings):
    from oauth2_provider.models import get_application_model

    from connections.oauth_apps import stored_portal_app
    from connections.sandbox_provider import ensure_portal_app

    settings.PORTAL_SANDBOX_ENABLED = True
    ensure_portal_app()
    secret = stored_portal_app("sandbox").client_secret
    app = get_application_model().objects.get()
    client.force_login(tenant_admin)
    for url in (
        reverse("admin:oauth2_provider_application_changelist"),
        reverse("admin:oauth2_provider_application_change", args=[app.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert secret not in response.content.decode()
