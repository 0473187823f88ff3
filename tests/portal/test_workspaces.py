"""Every user has exactly one personal workspace, however the user was made."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from portal.models import Folder
from portal.workspaces import ensure_personal_workspace
from tests.at_once import at_once, needs_a_server_database


def test_created_with_the_user(make_user):
    user = make_user("alice", first_name="Alice", last_name="Liddell")
    workspace = Folder.objects.get(owner=user)
    assert workspace.kind == Folder.Kind.PERSONAL
    assert workspace.name == "Alice Liddell"
    assert workspace.parent is None


def test_created_by_createsuperuser(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-password-123")
    call_command(
        "createsuperuser", "--noinput", "--username", "boss", "--email", "boss@example.com"
    )
    boss = get_user_model().objects.get(username="boss")
    assert Folder.objects.filter(owner=boss).count() == 1


def test_created_in_the_admin(client, make_user):
    root = make_user("root", is_superuser=True, is_staff=True)
    client.force_login(root)
    response = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "newbie",
            "password1": "a-long-password-123",
            "password2": "a-long-password-123",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    newbie = get_user_model().objects.get(username="newbie")
    assert Folder.objects.filter(owner=newbie).count() == 1


def test_never_twice(make_user):
    user = make_user("bob")
    user.first_name = "Robert"
    user.save()
    assert ensure_personal_workspace(user) == user.personal_workspace
    assert Folder.objects.filter(owner=user).count() == 1


@pytest.mark.django_db(transaction=True)
def test_never_twice_under_concurrency(make_user):
    needs_a_server_database()
    user = make_user("carol")
    Folder.objects.filter(owner=user).delete()
    made, raised = at_once(lambda: ensure_personal_workspace(user).pk)
    assert raised == []
    assert len(made) == 4 and len(set(made)) == 1
    assert Folder.objects.filter(owner=user).count() == 1


def test_no_subfolders_or_roles_in_personal_workspace(client, make_user):
    from django.core.exceptions import ValidationError

    from portal import actions
    from portal.models import Role

    user = make_user("dan")
    workspace = user.personal_workspace
    with pytest.raises(ValidationError):
        actions.create_folder(name="Sub", parent=workspace)
    with pytest.raises(ValidationError):
        actions.assign_role(folder=workspace, role=Role.objects.first(), user=make_user("eve"))
    client.force_login(user)
    response = client.post(reverse("folder_subfolders", args=[workspace.pk]), {"name": "Sub"})
    assert response.status_code == 403
    assert not Folder.objects.filter(parent=workspace).exists()


def test_home_opens_own_workspace(client, make_user):
    user = make_user("fay")
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 302
    assert response.url == reverse("folder_connections", args=[user.personal_workspace.pk])
