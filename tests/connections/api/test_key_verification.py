"""Verifying an API key (``api_keys.authenticate``): one statement on the
digest's unique index that loads everything the API then reads of the key,
its user, the user's robot account and the key's folder, and a read that
rides on that statement (``authenticate_along``) only once the key is
known to be active."""

from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.runtime import for_use_along
from portal import api_keys
from portal.models import ApiKey
from tests.connections.api.helpers import API, make_connection
from tests.factories import assign

IP = "198.51.100.7"


def _verified_in_one_statement(raw: str, along=None):
    with CaptureQueriesContext(db) as queries:
        if along is None:
            found = api_keys.authenticate(raw, ip=IP)
        else:
            found = api_keys.authenticate_along(raw, along, ip=IP)
    assert [q["sql"].split(None, 1)[0] for q in queries] == ["SELECT"], queries
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


def test_a_read_along_the_key_gives_the_connection_and_the_grants(runner, tree, fakehub):
    connection = make_connection(tree["payables"], secret={"token": "tok"})
    issued = api_keys.issue(owner=runner, name="runs", actor=runner)
    api_keys.authenticate(issued.raw, ip=IP)
    key, (found, granted) = _verified_in_one_statement(issued.raw, for_use_along(connection.pk))
    assert key.user == runner
    assert found.pk == connection.pk and found.folder.pk == tree["payables"].pk
    assert found.credential.ciphertext == connection.credential.ciphertext
    assert {"view_connections", "use_connections"} <= granted
    missing = for_use_along(connection.pk + 1000)
    assert _verified_in_one_statement(issued.raw, missing)[1] == (None, None)


def test_grants_read_along_are_the_keys_users_and_no_one_elses(make_user, tree, fakehub):
    """Another user's role on the folder lends nothing to this key."""
    stranger = make_user("stranger")
    assign(make_user("owner"), tree["finance"], "Folder Administrator")
    connection = make_connection(tree["payables"])
    issued = api_keys.issue(owner=stranger, name="runs", actor=stranger)
    _, (found, granted) = api_keys.authenticate_along(
        issued.raw, for_use_along(connection.pk), ip=IP
    )
    assert found.pk == connection.pk and granted == frozenset()


@pytest.mark.parametrize("how", ["revoked", "expired", "deactivated", "unknown"])
def test_nothing_read_along_leaves_with_a_key_that_does_not_authenticate(
    how, runner, tree, fakehub
):
    connection = make_connection(tree["payables"], secret={"token": "tok"})
    issued = api_keys.issue(owner=runner, name="runs", actor=runner)
    raw = issued.raw
    if how == "revoked":
        api_keys.revoke(issued.key, actor=runner)
    elif how == "expired":
        ApiKey.objects.filter(pk=issued.key.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    elif how == "deactivated":
        type(runner).objects.filter(pk=runner.pk).update(is_active=False)
    else:
        raw = "cpk_" + "x" * 43
    with pytest.raises(api_keys.ApiKeyRefused):
        api_keys.authenticate_along(raw, for_use_along(connection.pk), ip=IP)


def test_the_bare_endpoint_is_one_statement(runner, api_for):
    api = api_for(runner)
    assert api.get(f"{API}/me").status_code == 200  # records the first use (a write)
    with CaptureQueriesContext(db) as queries:
        answer = api.get(f"{API}/me")
    assert answer.status_code == 200 and answer.json()["user"] == "runner"
    assert [q["sql"].split(None, 1)[0] for q in queries] == ["SELECT"]
