"""``Connection.objects.visible_to(user)``: the connections a user may see,
for every role and wherever the folder stands, against the rule written out
here: Connections - View on the folder or an ancestor (a role given to the
user or one of their groups), their own personal workspace, and every shared
folder for a tenant administrator (never someone else's workspace)."""

import pytest
from django.contrib.auth.models import Permission

from connections.models import Connection
from portal.models import Role
from portal.permissions import Action, can, is_tenant_admin
from portal.roles import BUILTIN_ROLES
from tests.factories import GroupFactory, assign

JOBS_ONLY = "Jobs only"  # opens the folder, does not see its connections
ROLES = [*BUILTIN_ROLES, JOBS_ONLY, None]
# Where each connection stands, relative to Finance, where the role is given.
PLACES = ["shared", "finance", "payables", "hr", "other", "own", "someone_else"]
BELOW_THE_GRANT = {"finance", "payables"}


def _sees_connections(role):
    return role is not None and role != JOBS_ONLY  # every built-in role has View


@pytest.fixture
def world(tree, make_user):
    """A connection in each place; a role with no Connections - View."""
    jobs_only = Role.objects.create(name=JOBS_ONLY)
    jobs_only.permissions.add(Permission.objects.get(codename="view_jobs"))
    member, someone = make_user("member"), make_user("someone-else")
    folders = {
        **{name: tree[name] for name in ("shared", "finance", "payables", "hr", "other")},
        "own": member.personal_workspace,
        "someone_else": someone.personal_workspace,
    }
    connections = {
        place: Connection.objects.create(
            folder=folder, connector_key="sandbox", name=f"In {place}", auth_type="api_key"
        )
        for place, folder in folders.items()
    }
    return member, folders, connections


@pytest.mark.parametrize("through", ["user", "group"])
@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-role")
def test_visible_to_every_role(world, role, through, django_assert_num_queries):
    member, folders, connections = world
    if role and through == "user":
        assign(member, folders["finance"], role)
    elif role:
        group = GroupFactory()
        member.groups.add(group)
        assign(group, folders["finance"], role)
    expected = {"own"} | (BELOW_THE_GRANT if _sees_connections(role) else set())

    is_tenant_admin(member)  # the role, read once per request
    with django_assert_num_queries(1):
        seen = set(Connection.objects.visible_to(member).values_list("pk", flat=True))
    assert seen == {connections[place].pk for place in expected}
    # The list and the page's per-folder answer agree.
    for place in PLACES:
        assert can(member, Action.VIEW_CONNECTIONS, folders[place]) == (place in expected), place


@pytest.mark.parametrize("how", ["superuser", "given", "given_to_a_group"])
def test_tenant_admin_sees_every_shared_folder_and_only_their_own_workspace(
    world, how, django_assert_num_queries
):
    member, folders, connections = world
    admin_permission = Permission.objects.get(codename="administer_tenant")
    if how == "superuser":
        member.is_superuser = True
        member.save()
    elif how == "given":
        member.user_permissions.add(admin_permission)
    else:
        group = GroupFactory()
        group.permissions.add(admin_permission)
        member.groups.add(group)
    expected = set(PLACES) - {"someone_else"}

    assert is_tenant_admin(member)
    with django_assert_num_queries(1):
        seen = set(Connection.objects.visible_to(member).values_list("pk", flat=True))
    assert seen == {connections[place].pk for place in expected}
    for place in PLACES:
        assert can(member, Action.VIEW_CONNECTIONS, folders[place]) == (place in expected), place


def test_nobody_signed_in_or_deactivated_sees_nothing(world, django_assert_num_queries):
    from django.contrib.auth.models import AnonymousUser

    member, folders, _ = world
    assign(member, folders["shared"], "Folder Administrator")
    member.is_active = False
    member.save()
    for user in (AnonymousUser(), member):
        with django_assert_num_queries(0):
            assert list(Connection.objects.visible_to(user)) == []


def test_a_grant_on_an_ancestor_shows_everything_below_it(world):
    member, folders, connections = world
    assign(member, folders["shared"], "Viewer")
    seen = set(Connection.objects.visible_to(member).values_list("pk", flat=True))
    below_shared = {"shared", "finance", "payables", "hr", "own"}
    assert seen == {connections[place].pk for place in below_shared}


def test_health_overview_lists_shared_folders_only_in_constant_queries(
    client, tree, make_user, django_assert_num_queries
):
    """A tenant administrator given the role through a group: the overview
    shows every shared folder's connections, not their own workspace's (nor
    anyone else's), and costs the same however many folders it spans."""
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from connections.models import ConnectionState

    admin, someone = make_user("delegate"), make_user("someone-else")
    group = GroupFactory()
    group.permissions.add(Permission.objects.get(codename="administer_tenant"))
    admin.groups.add(group)

    def broken(folder, name):
        Connection.objects.create(
            folder=folder,
            connector_key="sandbox",
            name=name,
            auth_type="api_key",
            state=ConnectionState.NEEDS_RECONNECT,
        )

    broken(tree["finance"], "Finance robot")
    broken(admin.personal_workspace, "My robot")
    broken(someone.personal_workspace, "Their robot")
    client.force_login(admin)
    with CaptureQueriesContext(db) as few:
        page = client.get(reverse("tenant_health")).content.decode()
    assert "Finance robot" in page
    assert "My robot" not in page and "Their robot" not in page
    for name in ("shared", "payables", "hr", "other"):
        broken(tree[name], f"{name} robot")
    with django_assert_num_queries(len(few)):
        page = client.get(reverse("tenant_health")).content.decode()
    assert all(f"{name} robot" in page for name in ("shared", "payables", "hr", "other"))
