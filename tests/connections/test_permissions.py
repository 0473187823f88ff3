"""Connections that belong elsewhere, answered by the server. Every page
x role x where the folder stands is in tests/portal/test_permission_matrix.py."""

import pytest
from django.urls import reverse

from connections.models import Connection
from tests.factories import ConnectionFactory, assign


def _connection_in(folder):
    return ConnectionFactory(
        folder=folder, sandbox=True, name="Robot", secret={"token": "sbx_matrix_secret"}
    )


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


def test_owner_only_in_personal_workspace(client, make_user, tenant_admin):
    owner = make_user("owner")
    connection = _connection_in(owner.personal_workspace)
    url = reverse("connection_detail", args=[owner.personal_workspace.pk, connection.pk])
    client.force_login(owner)
    assert client.get(url).status_code == 200
    client.force_login(tenant_admin)
    assert client.get(url).status_code == 404


def test_connection_of_another_folder_is_404(client, tree, make_user):
    user = make_user("u")
    assign(user, tree["finance"], "Folder Administrator")
    elsewhere = _connection_in(tree["hr"])
    client.force_login(user)
    # A visible folder's URL with the id of a connection that lives elsewhere.
    url = reverse("connection_detail", args=[tree["finance"].pk, elsewhere.pk])
    assert client.get(url).status_code == 404
    url = reverse("connection_delete", args=[tree["finance"].pk, elsewhere.pk])
    assert client.post(url).status_code == 404
    assert Connection.objects.filter(pk=elsewhere.pk).exists()
