"""Verifying an API key (``api_keys.authenticate``): one query on the
digest's unique index that loads everything the API then reads of the key,
its user, the user's robot account and the key's folder; and the
credentials path's read of a connection with the caller's grants
(``runtime.connection_for_use``), one statement too."""

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from connections.runtime import connection_for_use
from portal import api_keys
from portal.models import ApiKey
from tests.connections.api.helpers import API, make_connection
from tests.factories import assign

IP = "198.51.100.7"


def _verified_in_one_statement(raw: str):
    with CaptureQueriesContext(db) as queries:
        found = api_keys.authenticate(raw, ip=IP)
    assert len(queries) == 1, queries
    return found


def test_a_robots_scoped_key_comes_with_all_the_api_reads_of_it(make_user, tree, tenant_admin):
    robot = api_keys.create_robot(name="payer", description="Pays invoices", actor=tenant_admin)
    assign(robot.user, tree["finance"], "Automation User")
    issued = api_keys.issue(
        owner=robot.user, name="nightly", folder=tree["finance"], actor=tenant_admin
    )
    api_keys.authenticate(issued.raw, ip=IP)  # records the first use (a write)
    key = _verified_in_one_statement(issued.raw)
    with CaptureQueriesContext(db) as later:
        assert key == issued.key
        assert (key.name, key.hint, key.last_used_ip) == ("nightly", issued.key.hint, IP)
        assert key.user.get_username() == "payer" and key.user.is_active
        assert key.user.email == robot.user.email
        assert hasattr(key.user, "robot") and key.user.robot.description == "Pays invoices"
        assert key.user.robot.user is key.user
        assert key.folder.path == tree["finance"].path
        assert api_keys.in_scope(key, tree["payables"])
        assert not api_keys.in_scope(key, tree["hr"])
    assert later.captured_queries == []


def test_a_persons_unscoped_key_has_no_robot_and_no_folder(make_user):
    ada = make_user("ada")
    issued = api_keys.issue(owner=ada, name="laptop", actor=ada)
    api_keys.authenticate(issued.raw, ip=IP)
    key = _verified_in_one_statement(issued.raw)
    with CaptureQueriesContext(db) as later:
        assert key.user == ada
        assert not hasattr(key.user, "robot")
        assert key.folder is None and key.folder_id is None
    assert later.captured_queries == []


def test_last_use_is_written_once_a_minute_and_for_a_new_address(make_user):
    ada = make_user("ada")
    issued = api_keys.issue(owner=ada, name="laptop", actor=ada)
    with CaptureQueriesContext(db) as first:
        api_keys.authenticate(issued.raw, ip=IP)
    assert [q["sql"].split(None, 1)[0] for q in first] == ["SELECT", "UPDATE"]
    _verified_in_one_statement(issued.raw)
    with CaptureQueriesContext(db) as moved:
        api_keys.authenticate(issued.raw, ip="203.0.113.1")
    assert len(moved) == 2
    assert ApiKey.objects.get(pk=issued.key.pk).last_used_ip == "203.0.113.1"


@pytest.fixture
def runner(make_user, tree):
    user = make_user("runner")
    assign(user, tree["finance"], "Automation User")
    return user


def test_a_read_for_use_gives_the_connection_and_the_grants_in_one_query(
    runner, tree, fakehub, django_assert_num_queries
):
    connection = make_connection(tree["payables"], secret={"token": "tok"})
    connection_for_use(connection.pk, runner)  # warm: permission names read once
    with django_assert_num_queries(1):
        found, granted = connection_for_use(connection.pk, runner)
        assert found.pk == connection.pk and found.name == connection.name
        assert found.folder.pk == tree["payables"].pk
        assert found.folder.path == tree["payables"].path
        assert found.credential.ciphertext == connection.credential.ciphertext
        assert found.fields == connection.fields and found.is_enabled
    assert {"view_connections", "use_connections"} <= granted
    assert "manage_folder_access" not in granted
    assert connection_for_use(connection.pk + 1000, runner) == (None, frozenset())
    assert connection_for_use(2**80, runner) == (None, frozenset())


def test_grants_read_for_use_are_the_callers_and_no_one_elses(make_user, tree, fakehub):
    """Another user's role on the folder lends nothing to this caller."""
    stranger = make_user("stranger")
    assign(make_user("owner"), tree["finance"], "Folder Administrator")
    connection = make_connection(tree["payables"])
    found, granted = connection_for_use(connection.pk, stranger)
    assert found.pk == connection.pk and granted == frozenset()


def test_grants_through_a_group_and_tenant_administration_are_read(make_user, tree, fakehub):
    """The grants a permission check reads: a role given to one of the
    user's groups on an ancestor, and administer_tenant held directly or
    through a group (which applies to every folder); another user's role
    lends nothing."""
    from django.contrib.auth.models import Group, Permission

    from portal.permissions import _granted_codenames

    member, admin, admins_member = make_user("member"), make_user("admin"), make_user("boss")
    group = Group.objects.create(name="Payers")
    member.groups.add(group)
    assign(group, tree["finance"], "Automation User")
    assign(make_user("owner"), tree["hr"], "Folder Administrator")
    assert {"view_connections", "use_connections"} <= _granted_codenames(member, tree["payables"])
    assert _granted_codenames(member, tree["hr"]) == frozenset()

    administer = Permission.objects.get(codename="administer_tenant")
    admin.user_permissions.add(administer)
    admins = Group.objects.create(name="Admins")
    admins.permissions.add(administer)
    admins_member.groups.add(admins)
    elsewhere = make_connection(tree["hr"], "Elsewhere")
    for user in (admin, admins_member):
        assert _granted_codenames(user, tree["hr"]) == {"administer_tenant"}
        assert connection_for_use(elsewhere.pk, user)[1] == {"administer_tenant"}
    assert connection_for_use(elsewhere.pk, member)[1] == frozenset()


def test_the_bare_endpoint_is_one_statement(runner, api_for):
    api = api_for(runner)
    assert api.get(f"{API}/me").status_code == 200  # records the first use (a write)
    with CaptureQueriesContext(db) as queries:
        answer = api.get(f"{API}/me")
    assert answer.status_code == 200 and answer.json()["user"] == "runner"
    assert [q["sql"].split(None, 1)[0] for q in queries] == ["SELECT"]
