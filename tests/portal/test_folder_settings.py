"""Renaming, moving and deleting a shared folder: the rules
(``portal.actions``), who may (``portal.permissions``), the Settings tab
and its delete confirmation, and the admin, which asks the same rules."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from connections.models import Connection, Process, Trigger
from portal import actions
from portal.models import AuditRecord, Folder, RoleAssignment
from portal.permissions import may_manage_folder, may_move_folder_to
from tests.factories import ConnectionFactory, FolderFactory, assign


def _messages(error: ValidationError) -> dict[str, list[str]]:
    return error.message_dict


# --- The rules -------------------------------------------------------------------


def test_rename_audits_the_names_before_and_after(tree, tenant_admin):
    finance = tree["finance"]
    actions.rename_folder(finance, name="  Money ", description="Cash", actor=tenant_admin)
    finance.refresh_from_db()
    assert (finance.name, finance.description) == ("Money", "Cash")
    record = AuditRecord.objects.get(action=AuditRecord.Action.FOLDER_RENAMED)
    assert record.detail == "Finance → Money"
    assert record.folder_id == finance.pk
    assert record.actor_id == tenant_admin.pk
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.FOLDER_MOVED).exists()


def test_rename_keeps_the_create_rules(tree, tenant_admin):
    finance = tree["finance"]
    with pytest.raises(ValidationError) as empty:
        actions.rename_folder(finance, name="   ", actor=tenant_admin)
    assert _messages(empty.value) == {"name": ["Give the folder a name."]}
    with pytest.raises(ValidationError) as taken:
        actions.rename_folder(finance, name="hr", actor=tenant_admin)
    assert _messages(taken.value) == {"name": ["A folder named 'hr' already exists in Shared."]}
    # The same words as creating one there.
    with pytest.raises(ValidationError) as created:
        actions.create_folder(name="hr", parent=tree["shared"])
    assert _messages(created.value) == _messages(taken.value)
    # Its own name in another case is no clash.
    actions.rename_folder(finance, name="FINANCE", actor=tenant_admin)
    assert Folder.objects.get(pk=finance.pk).name == "FINANCE"
    assert Folder.objects.get(pk=finance.pk).name == "FINANCE"
    top = tree["other"]
    with pytest.raises(ValidationError) as top_taken:
        actions.rename_folder(top, name="SHARED", actor=tenant_admin)
    assert _messages(top_taken.value) == {
        "name": ["A folder named 'SHARED' already exists at the top level."]
    }
    assert AuditRecord.objects.filter(action=AuditRecord.Action.FOLDER_RENAMED).count() == 1


def test_move_rewrites_the_paths_below_and_audits_the_places(tree, tenant_admin):
    finance, payables, hr = tree["finance"], tree["payables"], tree["hr"]
    deeper = FolderFactory(name="Deeper", parent=payables)
    actions.move_folder(finance, parent=tree["other"], actor=tenant_admin)
    moved = f"{tree['other'].path}{finance.pk}/"
    paths = dict(Folder.objects.values_list("pk", "path"))
    assert paths[finance.pk] == moved
    assert paths[payables.pk] == f"{moved}{payables.pk}/"
    assert paths[deeper.pk] == f"{moved}{payables.pk}/{deeper.pk}/"
    assert paths[hr.pk] == f"{tree['shared'].path}{hr.pk}/"  # a sibling stays
    record = AuditRecord.objects.get(action=AuditRecord.Action.FOLDER_MOVED)
    assert record.detail == "From Shared to Other"
    actions.move_folder(finance, parent=None, actor=tenant_admin)
    assert Folder.objects.get(pk=finance.pk).path == f"/{finance.pk}/"
    assert Folder.objects.get(pk=deeper.pk).path == f"/{finance.pk}/{payables.pk}/{deeper.pk}/"
    assert AuditRecord.objects.filter(
        action=AuditRecord.Action.FOLDER_MOVED, detail="From Other to the top level"
    ).exists()


@pytest.mark.parametrize(
    "where, message",
    [
        ("itself", "A folder cannot be moved into itself."),
        (
            "child",
            "A folder cannot be moved below itself: Payables is one of Finance's subfolders.",
        ),
        (
            "grandchild",
            "A folder cannot be moved below itself: Deeper is one of Finance's subfolders.",
        ),
        ("workspace", "Personal workspaces have no subfolders."),
        ("sibling name", "A folder named 'Finance' already exists in Other."),
        ("top-level name", "A folder named 'Finance' already exists at the top level."),
        ("where it is", "Finance is already in Shared."),
    ],
)
def test_a_refused_move_says_why_and_changes_nothing(tree, tenant_admin, make_user, where, message):
    finance = tree["finance"]
    deeper = FolderFactory(name="Deeper", parent=tree["payables"])
    FolderFactory(name="finance", parent=tree["other"])
    parent = {
        "itself": finance,
        "child": tree["payables"],
        "grandchild": deeper,
        "workspace": make_user("owner").personal_workspace,
        "sibling name": tree["other"],
        "top-level name": None,
        "where it is": tree["shared"],
    }[where]
    if where == "top-level name":
        FolderFactory(name="FINANCE")
    before = dict(Folder.objects.values_list("pk", "path"))
    with pytest.raises(ValidationError) as refused:
        actions.move_folder(finance, parent=parent, actor=tenant_admin)
    assert _messages(refused.value) == {"parent": [message]}
    assert dict(Folder.objects.values_list("pk", "path")) == before
    assert Folder.objects.get(pk=finance.pk).parent_id == tree["shared"].pk
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.FOLDER_MOVED).exists()


def test_a_personal_workspace_is_not_moved(tree, tenant_admin, make_user):
    workspace = make_user("owner").personal_workspace
    with pytest.raises(ValidationError) as refused:
        actions.move_folder(workspace, parent=tree["shared"], actor=tenant_admin)
    assert _messages(refused.value) == {"parent": ["A personal workspace cannot be moved."]}


def test_deletion_impact_counts_what_goes_with_it(tree, tenant_admin, make_user):
    finance, payables = tree["finance"], tree["payables"]
    FolderFactory(name="Deeper", parent=payables)
    connection = ConnectionFactory(folder=payables, sandbox=True, secret={"token": "t"})
    ConnectionFactory(folder=finance, sandbox=True, secret={"token": "u"})
    process = Process.objects.create(folder=finance, name="Pay", job_queue=True)
    Trigger.objects.create(connection=connection, event_key="record_created", process=process)
    assign(make_user("viewer"), payables, "Viewer")
    ConnectionFactory(folder=tree["hr"], sandbox=True, secret={"token": "v"})  # not below

    impact = dict(actions.folder_deletion_impact(finance))
    assert impact["subfolders"] == 2
    assert impact["connections"] == 2
    assert impact["process"] == 1
    assert impact["trigger"] == 1
    assert impact["role assignment"] == 1
    assert actions.folder_deletion_impact(finance)[0] == ("subfolders", 2)
    assert actions.folder_deletion_impact(tree["hr"])[:2] == [
        ("subfolders", 0),
        ("connection", 1),
    ]

    actions.delete_folder(finance, actor=tenant_admin)
    assert not Folder.objects.filter(path__startswith=finance.path).exists()
    assert Connection.objects.filter(folder=tree["hr"]).count() == 1
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not RoleAssignment.objects.filter(folder=payables).exists()
    record = AuditRecord.objects.get(action=AuditRecord.Action.FOLDER_DELETED)
    assert (record.target_name, record.detail) == ("Finance", "With 2 subfolder(s).")


# --- Who may ---------------------------------------------------------------------


def test_who_may_manage_a_folder(tree, tenant_admin, make_user):
    shared, finance, payables, hr = (tree[k] for k in ("shared", "finance", "payables", "hr"))
    folder_admin = make_user("fa")
    assign(folder_admin, finance, "Folder Administrator")
    developer = make_user("dev")
    assign(developer, shared, "Automation Developer")
    workspace = folder_admin.personal_workspace

    assert may_manage_folder(tenant_admin, shared)  # top level: tenant administrators
    assert may_manage_folder(tenant_admin, payables)
    assert not may_manage_folder(tenant_admin, workspace)
    # Folder Administrator on Finance: its subfolders, not Finance itself.
    assert may_manage_folder(folder_admin, payables)
    assert not may_manage_folder(folder_admin, finance)
    assert not may_manage_folder(folder_admin, hr)
    assert not may_manage_folder(folder_admin, workspace)
    assert not may_manage_folder(developer, finance)
    # Moving needs Folder - Manage access at the destination too.
    inner = FolderFactory(name="Inner", parent=finance)
    assert may_move_folder_to(folder_admin, payables, inner)
    assert not may_move_folder_to(folder_admin, payables, hr)
    assert not may_move_folder_to(folder_admin, payables, None)
    assert not may_move_folder_to(folder_admin, payables, workspace)
    assert may_move_folder_to(tenant_admin, payables, None)
    assert may_move_folder_to(tenant_admin, payables, hr)


# --- The pages -------------------------------------------------------------------


def test_the_folder_page_links_to_settings_for_those_who_manage_it(client, tree, make_user):
    folder_admin = make_user("fa")
    assign(folder_admin, tree["finance"], "Folder Administrator")
    developer = make_user("dev")
    assign(developer, tree["finance"], "Automation Developer")
    url = reverse("folder_settings", args=[tree["payables"].pk])
    client.force_login(folder_admin)
    page = client.get(reverse("folder_connections", args=[tree["payables"].pk])).content.decode()
    assert f'href="{url}"' in page
    client.force_login(developer)
    page = client.get(reverse("folder_connections", args=[tree["payables"].pk])).content.decode()
    assert f'href="{url}"' not in page
    assert client.get(url).status_code == 403


def test_settings_of_a_folder_the_user_may_not_change_say_who_may(client, tree, make_user):
    folder_admin = make_user("fa")
    assign(folder_admin, tree["finance"], "Folder Administrator")
    client.force_login(folder_admin)
    response = client.get(reverse("folder_settings", args=[tree["finance"].pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "needs Folder - Manage access in Shared" in page
    assert reverse("folder_rename", args=[tree["finance"].pk]) not in page
    response = client.post(reverse("folder_rename", args=[tree["finance"].pk]), {"name": "X"})
    assert response.status_code == 403
    assert Folder.objects.get(pk=tree["finance"].pk).name == "Finance"


def test_personal_workspaces_have_no_settings(client, make_user, tenant_admin):
    owner = make_user("owner")
    workspace = owner.personal_workspace
    client.force_login(owner)
    for name in ("folder_settings", "folder_delete"):
        assert client.get(reverse(name, args=[workspace.pk])).status_code == 403
    assert (
        client.post(reverse("folder_rename", args=[workspace.pk]), {"name": "Mine"}).status_code
        == 403
    )
    client.force_login(tenant_admin)
    assert client.get(reverse("folder_settings", args=[workspace.pk])).status_code == 404
    page = client.get(reverse("folder_connections", args=[owner.personal_workspace.pk]))
    assert page.status_code == 404
    client.force_login(owner)
    page = client.get(reverse("folder_connections", args=[workspace.pk])).content.decode()
    assert "settings-tab" not in page


def test_a_folder_admin_renames_a_subfolder(client, tree, make_user):
    folder_admin = make_user("fa")
    assign(folder_admin, tree["finance"], "Folder Administrator")
    client.force_login(folder_admin)
    payables = tree["payables"]
    response = client.post(
        reverse("folder_rename", args=[payables.pk]), {"name": "Bills", "description": "To pay"}
    )
    assert response.status_code == 302
    assert response.url == reverse("folder_settings", args=[payables.pk])
    payables.refresh_from_db()
    assert (payables.name, payables.description) == ("Bills", "To pay")
    page = client.get(response.url).content.decode()
    assert "Folder Payables renamed to Bills." in page
    assert AuditRecord.objects.get(action=AuditRecord.Action.FOLDER_RENAMED).detail == (
        "Payables → Bills"
    )


def test_a_failed_rename_keeps_what_was_typed(client, tree, tenant_admin):
    client.force_login(tenant_admin)
    FolderFactory(name="Bills", parent=tree["finance"])
    response = client.post(
        reverse("folder_rename", args=[tree["payables"].pk]),
        {"name": "bills", "description": "Typed here"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "A folder named &#x27;bills&#x27; already exists in Finance." in page
    assert 'value="bills"' in page and 'value="Typed here"' in page
    assert 'id="id_name_error"' in page  # next to the field
    assert Folder.objects.get(pk=tree["payables"].pk).name == "Payables"
    response = client.post(reverse("folder_rename", args=[tree["payables"].pk]), {"name": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_moving_from_the_page(client, tree, make_user, tenant_admin):
    folder_admin = make_user("fa")
    assign(folder_admin, tree["finance"], "Folder Administrator")
    assign(folder_admin, tree["hr"], "Folder Administrator")
    client.force_login(folder_admin)
    payables = tree["payables"]
    settings_page = client.get(reverse("folder_settings", args=[payables.pk])).content.decode()
    assert f'<option value="{tree["hr"].pk}">Shared / HR</option>' in settings_page
    assert '<option value="top">' not in settings_page  # only for tenant administrators
    assert f'<option value="{tree["other"].pk}"' not in settings_page
    assert f'<option value="{payables.pk}"' not in settings_page

    url = reverse("folder_move", args=[payables.pk])
    assert client.post(url, {"parent": "top"}).status_code == 403
    refused = client.post(url, {"parent": str(tree["other"].pk)})  # not managed by them
    assert refused.status_code == 400
    assert "Choose a folder you may manage." in refused.content.decode()
    refused = client.post(url, {"parent": str(payables.pk)})
    assert refused.status_code == 400
    assert "A folder cannot be moved into itself." in refused.content.decode()
    assert client.post(url, {}).status_code == 400

    response = client.post(url, {"parent": str(tree["hr"].pk)})
    assert response.status_code == 302
    assert Folder.objects.get(pk=payables.pk).parent_id == tree["hr"].pk
    page = client.get(response.url).content.decode()
    assert "Folder Payables moved into HR." in page

    client.force_login(tenant_admin)
    assert client.post(url, {"parent": "top"}).status_code == 302
    assert Folder.objects.get(pk=payables.pk).path == f"/{payables.pk}/"


def test_delete_asks_for_the_box_and_names_what_goes(client, tree, make_user):
    folder_admin = make_user("fa")
    assign(folder_admin, tree["finance"], "Folder Administrator")
    payables = tree["payables"]
    ConnectionFactory(folder=payables, sandbox=True, secret={"token": "t"})
    client.force_login(folder_admin)
    url = reverse("folder_delete", args=[payables.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "<strong>1</strong> connection<" in page
    assert 'name="confirm"' in page

    refused = client.post(url, {})
    assert refused.status_code == 400
    assert "Tick the box to confirm" in refused.content.decode()
    assert Folder.objects.filter(pk=payables.pk).exists()

    response = client.post(url, {"confirm": "1"})
    assert response.status_code == 302
    assert response.url == reverse("folder_subfolders", args=[tree["finance"].pk])
    assert not Folder.objects.filter(pk=payables.pk).exists()
    assert "Folder Payables was deleted" in client.get(response.url).content.decode()


def test_a_top_level_folder_is_deleted_by_a_tenant_admin_only(
    client, tree, make_user, tenant_admin
):
    folder_admin = make_user("fa")
    assign(folder_admin, tree["other"], "Folder Administrator")
    client.force_login(folder_admin)
    url = reverse("folder_delete", args=[tree["other"].pk])
    assert client.post(url, {"confirm": "1"}).status_code == 403
    assert Folder.objects.filter(pk=tree["other"].pk).exists()
    client.force_login(tenant_admin)
    response = client.post(url, {"confirm": "1"})
    assert response.status_code == 302
    assert response.url == reverse("tenant_folders")
    assert not Folder.objects.filter(pk=tree["other"].pk).exists()


def test_get_never_deletes(client, tree, tenant_admin):
    client.force_login(tenant_admin)
    client.get(reverse("folder_delete", args=[tree["payables"].pk]), {"confirm": "1"})
    assert Folder.objects.filter(pk=tree["payables"].pk).exists()
    assert client.get(reverse("folder_move", args=[tree["payables"].pk])).status_code == 405


# --- The admin asks the same rules -------------------------------------------------


def test_the_admin_refuses_what_the_pages_refuse(client, tree, tenant_admin):
    client.force_login(tenant_admin)
    finance = tree["finance"]
    url = reverse("admin:portal_folder_change", args=[finance.pk])
    form = {
        "name": "Finance",
        "description": "",
        "kind": "shared",
        "owner": "",
        "assignments-TOTAL_FORMS": "0",
        "assignments-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    response = client.post(url, {**form, "parent": tree["payables"].pk})
    assert response.status_code == 200  # the form again
    assert "Payables is one of Finance&#x27;s subfolders" in response.content.decode()
    FolderFactory(name="FINANCE", parent=tree["other"])
    response = client.post(url, {**form, "parent": tree["other"].pk})
    assert "A folder named &#x27;Finance&#x27; already exists in Other." in (
        response.content.decode()
    )
    assert Folder.objects.get(pk=finance.pk).parent_id == tree["shared"].pk
    response = client.post(url, {**form, "name": "Money", "parent": tree["hr"].pk})
    assert response.status_code == 302
    assert Folder.objects.get(pk=finance.pk).parent_id == tree["hr"].pk
    assert AuditRecord.objects.filter(action=AuditRecord.Action.FOLDER_MOVED).count() == 1
    assert AuditRecord.objects.filter(action=AuditRecord.Action.FOLDER_RENAMED).count() == 1


def test_read_only_mode_leaves_the_pages_writable(client, tree, tenant_admin):
    """Read-only mode refuses the API's and portal-cli's writes; the pages are
    where folders (and connections) are managed then, as every other page."""
    actions.set_governance(
        allow_shared_connection_creation=True, read_only=True, changed_by=tenant_admin
    )
    client.force_login(tenant_admin)
    url = reverse("folder_rename", args=[tree["hr"].pk])
    assert client.post(url, {"name": "People"}).status_code == 302
    assert Folder.objects.get(pk=tree["hr"].pk).name == "People"
