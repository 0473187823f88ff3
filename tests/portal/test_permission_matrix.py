"""Every role x every folder action x where the folder stands, through HTTP.

The expected answers come from the role definitions in the issue, written out
here rather than derived from the code under test.
"""

import pytest
from django.urls import reverse

from portal.models import TenantSettings
from portal.permissions import Action, can
from tests.factories import FolderFactory, assign

ROLE_ACTIONS = {
    "Folder Administrator": {"view", "create", "edit", "delete", "manage"},
    "Automation Developer": {"view", "create", "edit", "delete"},
    "Automation User": {"view"},
    "Viewer": {"view"},
    None: set(),
}
ACTION_CODENAMES = {
    "create": Action.CREATE_CONNECTIONS,
    "edit": Action.EDIT_CONNECTIONS,
    "delete": Action.DELETE_CONNECTIONS,
    "manage": Action.MANAGE_FOLDER_ACCESS,
}
PLACES = ["assigned", "subfolder", "unrelated", "other_workspace"]


def _place(name, tree, other_user):
    return {
        "assigned": tree["finance"],
        "subfolder": tree["payables"],
        "unrelated": tree["hr"],
        "other_workspace": other_user.personal_workspace,
    }[name]


def _expected(role, place, governance_on):
    allowed = set(ROLE_ACTIONS[role]) if place in {"assigned", "subfolder"} else set()
    if not governance_on and "manage" not in allowed:
        allowed.discard("create")
    return allowed


def _http_status(client, action, folder):
    """What the server answers for an action that has a page."""
    if action == "view_folder":
        return client.get(reverse("folder_subfolders", args=[folder.pk])).status_code
    if action == "view":
        return client.get(reverse("folder_connections", args=[folder.pk])).status_code
    if action == "create":
        return client.get(reverse("connection_add", args=[folder.pk])).status_code
    if action == "manage":
        return client.get(reverse("folder_access", args=[folder.pk])).status_code
    raise AssertionError(action)


@pytest.mark.parametrize("governance_on", [True, False], ids=["governance-on", "governance-off"])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_role_matrix(client, tree, make_user, role, place, governance_on):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": governance_on}
    )
    user = make_user("member")
    other = make_user("someone-else")
    if role:
        assign(user, tree["finance"], role)
    folder = _place(place, tree, other)
    expected = _expected(role, place, governance_on)
    visible = bool(expected) or (role and place in {"assigned", "subfolder"})
    client.force_login(user)

    # Visibility: a folder the user cannot see answers 404, never 403.
    assert _http_status(client, "view_folder", folder) == (200 if visible else 404)
    for action in ("view", "create", "manage"):
        status = _http_status(client, action, folder)
        if not visible:
            assert status == 404, action
        else:
            assert status == (200 if action in expected else 403), action
    # Edit and delete have no page of their own yet: ask the permission module.
    for action in ("create", "edit", "delete", "manage"):
        assert can(user, ACTION_CODENAMES[action], folder) == (action in expected), action


def test_assignment_to_group_applies_to_members(client, tree, make_user):
    from tests.factories import GroupFactory

    group = GroupFactory()
    user = make_user("grouped")
    user.groups.add(group)
    assign(group, tree["finance"], "Automation Developer")
    client.force_login(user)
    assert client.get(reverse("connection_add", args=[tree["payables"].pk])).status_code == 200
    assert client.get(reverse("folder_connections", args=[tree["hr"].pk])).status_code == 404


@pytest.mark.parametrize("governance_on", [True, False])
def test_tenant_admin_everywhere_shared_but_not_inside_workspaces(
    client, tree, make_user, tenant_admin, governance_on
):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": governance_on}
    )
    other = make_user("alice")
    client.force_login(tenant_admin)
    for folder in (tree["shared"], tree["payables"], tree["other"]):
        for action in ("view_folder", "view", "create", "manage"):
            assert _http_status(client, action, folder) == 200, (folder, action)
    workspace = other.personal_workspace
    for action in ("view_folder", "view", "create"):
        assert _http_status(client, action, workspace) == 404
    # ... but lists that it exists.
    page = client.get(reverse("tenant_workspaces"))
    assert workspace.name in page.content.decode()


@pytest.mark.parametrize("governance_on", [True, False])
def test_owner_of_personal_workspace(client, make_user, governance_on):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": governance_on}
    )
    user = make_user("owner")
    workspace = user.personal_workspace
    client.force_login(user)
    for action in ("view_folder", "view", "create"):
        assert _http_status(client, action, workspace) == 200
    # A personal workspace is not shared: nobody manages access to it.
    assert _http_status(client, "manage", workspace) == 403
    for action in ("create", "edit", "delete"):
        assert can(user, ACTION_CODENAMES[action], workspace)


def test_tenant_admin_role_can_be_given(client, make_user):
    from django.contrib.auth.models import Permission

    user = make_user("delegate")
    client.force_login(user)
    assert client.get(reverse("tenant_governance")).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="administer_tenant"))
    assert client.get(reverse("tenant_governance")).status_code == 200


def test_only_tenant_admin_changes_governance(client, tree, make_user, tenant_admin):
    admin_of_folder = make_user("fa")
    assign(admin_of_folder, tree["shared"], "Folder Administrator")
    client.force_login(admin_of_folder)
    response = client.post(reverse("tenant_governance"), {})
    assert response.status_code == 403
    assert TenantSettings.load().allow_shared_connection_creation is True

    client.force_login(tenant_admin)
    response = client.post(reverse("tenant_governance"), {})  # unchecked box: off
    assert response.status_code == 302
    assert TenantSettings.load().allow_shared_connection_creation is False


def test_managing_access_is_server_side(client, tree, make_user):
    developer = make_user("dev")
    target = make_user("target")
    assign(developer, tree["finance"], "Automation Developer")
    client.force_login(developer)
    response = client.post(
        reverse("folder_access", args=[tree["finance"].pk]),
        {"user": "target", "role": 1},
    )
    assert response.status_code == 403
    assert not target.role_assignments.exists()


def test_folder_admin_gives_and_removes_roles(client, tree, make_user):
    from portal.models import Role

    fa = make_user("fa")
    target = make_user("target")
    assign(fa, tree["shared"], "Folder Administrator")
    client.force_login(fa)
    viewer = Role.objects.get(name="Viewer")
    response = client.post(
        reverse("folder_access", args=[tree["finance"].pk]),
        {"user": "target@example.com", "role": viewer.pk},
    )
    assert response.status_code == 302
    assert can(target, Action.VIEW_CONNECTIONS, tree["payables"])
    assert not can(target, Action.VIEW_CONNECTIONS, tree["hr"])

    assignment = target.role_assignments.get()
    confirm = client.get(reverse("assignment_remove", args=[tree["finance"].pk, assignment.pk]))
    assert confirm.status_code == 200
    assert "Remove role" in confirm.content.decode()
    client.post(reverse("assignment_remove", args=[tree["finance"].pk, assignment.pk]))
    assert not can(target, Action.VIEW_FOLDER, tree["finance"])


def test_assignment_form_rejects_bad_input_and_changes_nothing(client, tree, make_user):
    from portal.models import Role, RoleAssignment

    fa = make_user("fa")
    assign(fa, tree["finance"], "Folder Administrator")
    client.force_login(fa)
    viewer = Role.objects.get(name="Viewer")
    before = RoleAssignment.objects.count()
    url = reverse("folder_access", args=[tree["finance"].pk])
    response = client.post(url, {"user": "nobody-here", "role": viewer.pk})
    assert response.status_code == 400
    assert "No active user with the username or e-mail" in response.content.decode()
    response = client.post(url, {"user": "", "role": viewer.pk})
    assert "Choose either a user or a group" in response.content.decode()
    assert RoleAssignment.objects.count() == before


def test_inherited_assignment_cannot_be_removed_from_subfolder(client, tree, make_user):
    fa = make_user("fa")
    assign(fa, tree["shared"], "Folder Administrator")
    target = make_user("target")
    inherited = assign(target, tree["shared"], "Viewer")
    client.force_login(fa)
    url = reverse("assignment_remove", args=[tree["finance"].pk, inherited.pk])
    assert client.post(url).status_code == 404
    assert target.role_assignments.exists()


def test_role_edit_in_admin_updates_grants(tree, make_user):
    from portal.models import Role

    user = make_user("u")
    assign(user, tree["finance"], "Viewer")
    assert not can(user, Action.USE_CONNECTIONS, tree["finance"])
    viewer = Role.objects.get(name="Viewer")
    from django.contrib.auth.models import Permission

    viewer.permissions.add(Permission.objects.get(codename="use_connections"))
    assert can(user, Action.USE_CONNECTIONS, tree["finance"])
    viewer.permissions.remove(Permission.objects.get(codename="use_connections"))
    assert not can(user, Action.USE_CONNECTIONS, tree["finance"])


def test_two_roles_sharing_a_permission_survive_removal_of_one(tree, make_user):
    user = make_user("u")
    dev = assign(user, tree["finance"], "Automation Developer")
    assign(user, tree["finance"], "Viewer")
    dev.delete()
    assert can(user, Action.VIEW_CONNECTIONS, tree["finance"])
    assert not can(user, Action.CREATE_CONNECTIONS, tree["finance"])


def test_moving_a_folder_moves_inherited_access(tree, make_user):
    user = make_user("u")
    assign(user, tree["hr"], "Viewer")
    payables = tree["payables"]
    deeper = FolderFactory(name="Deeper", parent=payables)
    assert not can(user, Action.VIEW_FOLDER, payables)
    payables.parent = tree["hr"]
    payables.save()
    deeper.refresh_from_db()
    assert deeper.path == f"{tree['shared'].path}{tree['hr'].pk}/{payables.pk}/{deeper.pk}/"
    assert can(user, Action.VIEW_FOLDER, payables)
    assert can(user, Action.VIEW_FOLDER, deeper)
    assert not can(user, Action.VIEW_FOLDER, tree["finance"])


# Folder ids far above what the test database's sequences reach, so that a
# test can choose them; they share digits on purpose.
A, BELOW_A, LOOKALIKE, LOOKALIKE_CHILD = 9_000_007, 9_000_008, 19_000_007, 90_000_071


def _folder(pk: int, parent=None):
    from portal.models import Folder

    return Folder.objects.create(pk=pk, name=f"F{pk}", kind=Folder.Kind.SHARED, parent=parent)


@pytest.mark.parametrize("through", ["user", "group"])
def test_a_grant_applies_below_its_folder_and_nowhere_its_id_is_part_of_another(make_user, through):
    """A folder's path is the ids from the top ("/9000007/9000008/"): a grant
    on 9000007 holds there and below, not in 19000007 nor in 90000071, whose
    paths hold the digits but not the id. Asked as the pages ask, and in the
    statement that reads a connection for use."""
    from connections.runtime import connection_for_use
    from portal.permissions import folder_permissions
    from tests.api.helpers import make_connection
    from tests.factories import GroupFactory

    granted = _folder(A)
    below = _folder(BELOW_A, granted)
    lookalike = _folder(LOOKALIKE)
    lookalike_child = _folder(LOOKALIKE_CHILD, lookalike)
    assert (below.path, lookalike_child.path) == ("/9000007/9000008/", "/19000007/90000071/")
    user = make_user("member")
    if through == "user":
        assign(user, granted, "Automation User")
    else:
        group = GroupFactory()
        user.groups.add(group)
        assign(group, granted, "Automation User")
    expected = {Action.VIEW_CONNECTIONS, Action.USE_CONNECTIONS}
    for place, holds in [(granted, True), (below, True), (lookalike, False),
                         (lookalike_child, False)]:  # fmt: skip
        got = folder_permissions(user, place)
        assert expected <= got if holds else not got, place.path
        _, read = connection_for_use(make_connection(place, f"In {place.pk}").pk, user)
        assert expected <= read if holds else not read, place.path


@pytest.mark.parametrize("seed", range(3))
def test_grants_on_a_random_tree_are_those_on_the_folder_and_its_ancestors(make_user, seed):
    """Random trees of folders whose ids share digits, roles given to a user
    directly and through two groups: on every folder, the grants the
    database answers (as the pages ask, and along a connection's read) are
    the roles' permissions given on a folder whose path starts its path,
    the rule written out here in Python."""
    import random

    from django.contrib.auth.models import Group

    from connections.runtime import connection_for_use
    from portal.models import Role
    from portal.permissions import _granted_codenames
    from tests.api.helpers import make_connection

    rng = random.Random(seed)
    # Ids with others that begin or end with them: 9001234, 90012347, 79001234.
    bases = rng.sample(range(9_000_000, 9_100_000), 8)
    pool = []
    for base in bases:
        pool += [base, base * 10 + rng.randint(0, 9), rng.randint(1, 9) * 10**7 + base]
    rng.shuffle(pool)
    folders = []
    for pk in pool:
        parent = rng.choice(folders) if folders and rng.random() < 0.7 else None
        folders.append(_folder(pk, parent))
    user = make_user("member")
    groups = [Group.objects.create(name=f"g{seed}-{n}") for n in range(2)]
    user.groups.add(*groups)
    roles = list(Role.objects.prefetch_related("permissions"))
    given = []
    for principal in [user, user, *groups, *groups]:
        folder, role = rng.choice(folders), rng.choice(roles)
        if not any(g[:3] == (principal, folder, role) for g in given):
            assign(principal, folder, role.name)
            given.append((principal, folder, role, {p.codename for p in role.permissions.all()}))
    for folder in folders:
        folder.refresh_from_db()
        expected = set().union(
            *(codenames for _, on, _, codenames in given if folder.path.startswith(on.path))
        )
        assert _granted_codenames(user, folder) == expected, folder.path
        connection = make_connection(folder, f"In {folder.pk}")
        assert connection_for_use(connection.pk, user)[1] == expected, folder.path
