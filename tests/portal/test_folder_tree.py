"""The folder tree costs the same number of queries whatever the tree holds,
and folder paths (what grants and key scopes follow) are made from the rows
as stored."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.folder_tree import folder_tree
from tests.factories import FolderFactory, GroupFactory, assign


def _page_queries(client, user, folder) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("folder_subfolders", args=[folder.pk]))
    assert response.status_code == 200
    return len(queries)


def _build_big_tree(user, roots: int = 10, per_root: int = 19) -> list:
    """roots x (1 + per_root) = 200 folders, three levels deep, 50 assignments."""
    group = GroupFactory()
    user.groups.add(group)
    folders = []
    for r in range(roots):
        root = FolderFactory(name=f"Root {r}")
        folders.append(root)
        parent = root
        for c in range(per_root):
            child = FolderFactory(name=f"Child {r}-{c}", parent=parent if c % 3 else root)
            folders.append(child)
            parent = child
    roles = ["Viewer", "Automation User", "Automation Developer", "Folder Administrator"]
    for i in range(50):
        principal = user if i % 2 else group
        assign(principal, folders[i * 4], roles[i % 4])
    return folders


def test_tree_query_count_is_constant(client, make_user):
    small_user = make_user("small")
    shared = FolderFactory(name="Small root")
    FolderFactory(name="Small child", parent=shared)
    assign(small_user, shared, "Viewer")
    small = _page_queries(client, small_user, shared)

    big_user = make_user("big")
    folders = _build_big_tree(big_user)
    assert len(folders) == 200
    big = _page_queries(client, big_user, folders[0])
    assert big == small

    # and the tree shows what the grants reach.
    visible = _flatten(folder_tree(big_user))
    assert len(visible) == 201  # 200 shared folders + the user's workspace


def test_tree_for_tenant_admin_is_constant(client, make_user, tenant_admin):
    shared = FolderFactory(name="Only")
    small = _page_queries(client, tenant_admin, shared)
    _build_big_tree(make_user("someone"))
    assert _page_queries(client, tenant_admin, shared) == small


def test_tree_hides_other_branches_and_nests(make_user):
    user = make_user("u")
    shared = FolderFactory(name="Shared")
    finance = FolderFactory(name="Finance", parent=shared)
    FolderFactory(name="Payables", parent=finance)
    FolderFactory(name="HR", parent=shared)
    assign(user, finance, "Viewer")
    roots = folder_tree(user)
    assert [node.folder.name for node in roots] == ["U", "Finance"]
    assert [child.folder.name for child in roots[1].children] == ["Payables"]


def _flatten(nodes):
    out = []
    for node in nodes:
        out.append(node.folder)
        out.extend(_flatten(node.children))
    return out


def test_paths_come_from_the_rows_as_stored_not_from_copies_in_memory(tree):
    """Another request moves Finance (with Payables) under HR while this one
    holds copies loaded before: a folder made under the old copy of Payables
    lands where Payables is now, and a move made with the old copy of
    Finance rewrites its subtree from where it is."""
    from portal.models import Folder

    stale_payables = Folder.objects.get(pk=tree["payables"].pk)
    stale_finance = Folder.objects.get(pk=tree["finance"].pk)
    finance = Folder.objects.get(pk=tree["finance"].pk)
    finance.parent = tree["hr"]
    finance.save()

    child = Folder.objects.create(name="Invoices", parent=stale_payables)
    payables = Folder.objects.get(pk=tree["payables"].pk)
    assert payables.path == f"{tree['hr'].path}{finance.pk}/{payables.pk}/"
    assert child.path == f"{payables.path}{child.pk}/"

    stale_finance.parent = tree["other"]
    stale_finance.save()
    moved = f"{tree['other'].path}{finance.pk}/"
    assert {f.pk: f.path for f in Folder.objects.filter(path__startswith=moved)} == {
        finance.pk: moved,
        payables.pk: f"{moved}{payables.pk}/",
        child.pk: f"{moved}{payables.pk}/{child.pk}/",
    }
    assert not Folder.objects.filter(path__startswith=f"{tree['hr'].path}{finance.pk}/").exists()


def test_a_folder_is_never_moved_below_itself_from_a_copy_in_memory(tree):
    """This request would move Finance under HR; meanwhile another moved HR
    under Payables, below Finance. The save refuses, and no path changes."""
    from django.core.exceptions import ValidationError

    from portal.models import Folder

    finance = Folder.objects.get(pk=tree["finance"].pk)
    finance.parent = Folder.objects.get(pk=tree["hr"].pk)
    finance.full_clean()  # with the copies in memory, nothing is wrong yet
    hr = Folder.objects.get(pk=tree["hr"].pk)
    hr.parent = tree["payables"]
    hr.save()
    before = dict(Folder.objects.values_list("pk", "path"))
    with pytest.raises(ValidationError, match="cannot be moved into itself"):
        finance.save()
    assert dict(Folder.objects.values_list("pk", "path")) == before


def test_saving_some_fields_keeps_the_path_and_a_move_saves_it(tree):
    from portal.models import Folder

    finance = Folder.objects.get(pk=tree["finance"].pk)
    finance.name, finance.parent = "Money", tree["other"]
    finance.save(update_fields=["name"])  # the move is not saved: neither is a path
    assert dict(Folder.objects.values_list("pk", "path")) == {f.pk: f.path for f in tree.values()}
    finance.save(update_fields=["parent"])
    payables = Folder.objects.get(pk=tree["payables"].pk)
    assert Folder.objects.get(pk=finance.pk).path == f"{tree['other'].path}{finance.pk}/"
    assert payables.path == f"{tree['other'].path}{finance.pk}/{payables.pk}/"
