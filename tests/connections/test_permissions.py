"""Every wizard step and every connection action x role x where the folder
stands, answered by the server (404 when invisible, 403 when not allowed)."""

import pytest
from django.urls import reverse

from connections import vault
from connections.models import Connection
from portal.models import TenantSettings
from tests.factories import assign

ROLES = {
    "Folder Administrator": {"view", "use", "create", "edit", "delete"},
    "Automation Developer": {"view", "use", "create", "edit", "delete"},
    "Automation User": {"view", "use"},
    "Viewer": {"view"},
    None: set(),
}

# (name, method, url name, needs a connection, permission it needs)
ACTIONS = [
    ("list", "get", "folder_connections", False, "view"),
    ("wizard-connector", "get", "connection_add", False, "create"),
    ("wizard-auth", "get", "connection_add_auth", False, "create"),
    ("wizard-details", "get", "connection_add_details", False, "create"),
    ("wizard-connect", "post", "connection_add_details", False, "create"),
    ("detail", "get", "connection_detail", True, "view"),
    ("edit-page", "get", "connection_edit", True, "edit"),
    ("edit", "post", "connection_edit", True, "edit"),
    ("secret-page", "get", "connection_replace_secret", True, "edit"),
    ("secret", "post", "connection_replace_secret", True, "edit"),
    ("check", "post", "connection_check", True, "use"),
    ("disable", "post", "connection_set_enabled", True, "edit"),
    ("delete-page", "get", "connection_delete", True, "view-delete"),
    ("delete", "post", "connection_delete", True, "delete"),
]


def _url(name, folder, connection):
    if name == "connection_add_auth":
        return reverse(name, args=[folder.pk, "sandbox"])
    if name == "connection_add_details":
        return reverse(name, args=[folder.pk, "sandbox", "pat"])
    if connection is None:
        return reverse(name, args=[folder.pk])
    return reverse(name, args=[folder.pk, connection.pk])


def _connection_in(folder):
    connection = Connection.objects.create(
        folder=folder, connector_key="sandbox", name="Robot", auth_type="pat"
    )
    vault.store_secret(connection, {"token": "sbx_matrix_secret"})
    return connection


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.mark.parametrize("governance_on", [True, False], ids=["gov-on", "gov-off"])
@pytest.mark.parametrize("place", ["assigned", "subfolder", "unrelated", "other_workspace"])
@pytest.mark.parametrize("role", list(ROLES), ids=lambda r: r or "no-role")
def test_matrix(client, tree, make_user, role, place, governance_on):
    TenantSettings.objects.filter(pk=1).update(allow_shared_connection_creation=governance_on)
    user = make_user("member")
    other = make_user("other")
    if role:
        assign(user, tree["finance"], role)
    folder = {
        "assigned": tree["finance"],
        "subfolder": tree["payables"],
        "unrelated": tree["hr"],
        "other_workspace": other.personal_workspace,
    }[place]
    held = ROLES[role] if place in {"assigned", "subfolder"} else set()
    if not governance_on and role != "Folder Administrator":
        held = held - {"create"}
    visible_folder = bool(role) and place in {"assigned", "subfolder"}
    client.force_login(user)
    for name, method, url_name, needs_connection, needed in ACTIONS:
        connection = _connection_in(folder) if needs_connection else None
        response = getattr(client, method)(_url(url_name, folder, connection))
        if needed == "view-delete":
            needed = "delete"
        if not visible_folder or (needs_connection and "view" not in held):
            expected = {404}
        elif needed in held:
            expected = {200, 302, 400}
        else:
            expected = {403}
        assert response.status_code in expected, (name, response.status_code)
        if needs_connection and response.status_code in {403, 404}:
            assert Connection.objects.filter(pk=connection.pk).exists(), name
            assert vault.read_secret(connection) == {"token": "sbx_matrix_secret"}
        if connection is not None:
            Connection.objects.filter(pk=connection.pk).delete()


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
