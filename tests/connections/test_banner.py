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


def _needs_reconnect(folder, name, user):
    return Connection.objects.create(
        folder=folder,
        connector_key="sandbox",
        name=name,
        auth_type="oauth2_authorization_code",
        state=ConnectionState.NEEDS_RECONNECT,
        authenticated_by=user,
    )


def test_banner_names_no_connection_in_a_folder_the_user_may_not_see(client, tree, make_user):
    """Ada authenticated a connection in Finance, then lost her role there:
    the banner does not name it (nor one in HR, where she never had one);
    her own workspace's still shows."""
    ada = make_user("ada")
    developer = assign(ada, tree["finance"], "Automation Developer")
    _needs_reconnect(tree["finance"], "Payroll robot", ada)
    _needs_reconnect(tree["hr"], "Hiring robot", ada)
    _needs_reconnect(ada.personal_workspace, "My robot", ada)
    developer.delete()
    client.force_login(ada)
    page = client.get(reverse("api_keys")).content.decode()
    assert 'data-testid="reconnect-banner"' in page and "My robot" in page
    assert "Payroll robot" not in page
    assert "Hiring robot" not in page


def test_banner_needs_connections_view_not_only_a_role(client, tree, make_user):
    """A role without Connections - View opens the folder, not its connections."""
    from django.contrib.auth.models import Permission

    from portal.models import Role

    role = Role.objects.create(name="Jobs only")
    role.permissions.add(Permission.objects.get(codename="view_jobs"))
    ada = make_user("ada")
    assign(ada, tree["finance"], "Jobs only")
    _needs_reconnect(tree["finance"], "Payroll robot", ada)
    client.force_login(ada)
    page = client.get(reverse("api_keys")).content.decode()
    assert "Payroll robot" not in page


def test_banner_costs_one_query_however_many_folders(
    rf, tree, make_user, tenant_admin, django_assert_num_queries
):
    """One query, whatever the user sees, once the user's tenant role is
    read (once per request: the page shell asks it too)."""
    from connections.context_processors import BANNER_LIMIT, needs_reconnect
    from portal.permissions import is_tenant_admin

    ada = make_user("ada")
    assign(ada, tree["shared"], "Viewer")
    for user in (ada, tenant_admin):
        for n, folder in enumerate([*tree.values(), user.personal_workspace] * 2):
            _needs_reconnect(folder, f"{user.username} robot {n}", user)
    for user in (ada, tenant_admin):
        request = rf.get("/")
        request.user = user
        is_tenant_admin(user)
        with django_assert_num_queries(1):
            shown = list(needs_reconnect(request)["reconnect_needed"])
        assert len(shown) == BANNER_LIMIT + 1


def test_a_page_with_the_banner_costs_the_same_however_many_folders(
    client, tree, make_user, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ada = make_user("ada")
    assign(ada, tree["finance"], "Viewer")
    _needs_reconnect(tree["finance"], "Payroll robot", ada)
    client.force_login(ada)
    url = reverse("api_keys")
    with CaptureQueriesContext(connection) as one:
        assert "Payroll robot" in client.get(url).content.decode()
    assign(ada, tree["hr"], "Viewer")
    for n, folder in enumerate(
        [tree["hr"], tree["payables"], tree["other"], ada.personal_workspace]
    ):
        _needs_reconnect(folder, f"Robot {n}", ada)
    with django_assert_num_queries(len(one)):
        page = client.get(url).content.decode()
    assert "Robot 0" in page and "Robot 3" in page and "Robot 2" not in page
