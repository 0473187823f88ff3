"""The portal tells the user who authenticated a connection that it needs
reconnecting, on every page, until it is reconnected."""

from django.urls import reverse

from connections.models import Connection, ConnectionState
from tests.factories import assign


def test_banner_for_the_authenticator_only(client, tree, make_user):
    ada, bob = make_user("ada"), make_user("bob")
    for user in (ada, bob):
        assign(user, tree["finance"], "Automation Developer")
    connection = Connection.objects.create(
        folder=tree["finance"],
        connector_key="sandbox",
        name="Payroll robot",
        auth_type="oauth2_authorization_code",
        state=ConnectionState.NEEDS_RECONNECT,
        authenticated_by=ada,
    )
    client.force_login(ada)
    page = client.get(reverse("folder_subfolders", args=[tree["finance"].pk])).content.decode()
    assert 'data-testid="reconnect-banner"' in page and "Payroll robot" in page
    client.force_login(bob)
    page = client.get(reverse("folder_subfolders", args=[tree["finance"].pk])).content.decode()
    assert 'data-testid="reconnect-banner"' not in page
    Connection.objects.filter(pk=connection.pk).update(state=ConnectionState.CONNECTED)
    client.force_login(ada)
    page = client.get(reverse("folder_subfolders", args=[tree["finance"].pk])).content.decode()
    assert 'data-testid="reconnect-banner"' not in page
