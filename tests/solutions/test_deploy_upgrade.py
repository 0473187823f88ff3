"""Upgrades: a trigger the new version no longer has is deleted; a trigger
in both is updated in place and keeps its cursor; a connection the new
version drops stays, with its triggers that remain. Edit deployment
configuration changes unlocked fields only, never the Authentication type;
removing a deployment keeps its connections."""

from __future__ import annotations

import pytest

from connections.models import Connection, Process, Trigger
from connections.triggers.configure import create_trigger
from solutions.deploy import actions, preflight
from solutions.models import Deployment
from tests.factories import ConnectionFactory, assign
from tests.solutions.deploy_helpers import (
    BASE,
    CONNECTION,
    PROCESS,
    TRIGGER,
    deploy,
    manifest,
    run_all,
    settings_doc,
    version_of,
)

pytestmark = pytest.mark.django_db

SECOND = {
    "key": "connection-2",
    "connector": "sandbox",
    "name": "Archive",
    "auth_type": "pat",
}
SECOND_TRIGGER = {
    "key": "trigger-2",
    "connection": "connection-2",
    "process": PROCESS,
    "event": "record_created",
}


@pytest.fixture
def deployer(make_user, tree):
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    return user


def _upgrade(deployment, version, user, **sections):
    actions.upgrade(
        deployment=deployment,
        version=version,
        settings=settings_doc(deployment.folder_path, **sections),
        actor=user,
    )
    state = run_all(deployment)
    deployment.refresh_from_db()
    return state


def test_upgrade_updates_in_place_deletes_what_is_gone_and_keeps_dropped_connections(deployer):
    one = version_of(
        manifest(
            connections=[*BASE["connections"], SECOND],
            triggers=[*BASE["triggers"], SECOND_TRIGGER],
        )
    )
    deployment, state = deploy(one, deployer)
    assert state == Deployment.State.SUCCEEDED, deployment.error
    kept = Trigger.objects.get(connection__name="Records")
    Trigger.objects.filter(pk=kept.pk).update(cursor="cursor-at-record-41")
    archive = Connection.objects.get(name="Archive")
    # Someone added a trigger of their own on the connection the new version drops.
    own = create_trigger(
        connection=archive,
        event_key="record_created",
        filters={},
        process=Process.objects.get(name="Book"),
    )
    two_manifest = manifest(
        triggers=[{**BASE["triggers"][0], "filters": {"title_contains": "receipt"}}]
    )
    two = version_of(two_manifest, number=2, solution=one.solution)
    assert _upgrade(deployment, two, deployer) == Deployment.State.SUCCEEDED, deployment.error
    assert deployment.version == two and deployment.upgraded_from == one
    kept.refresh_from_db()
    assert kept.filters == {"title_contains": "receipt"}
    assert kept.cursor == "cursor-at-record-41"  # no replay, no gap
    # The trigger the new version no longer has is gone; the connection stays.
    assert set(Trigger.objects.values_list("pk", flat=True)) == {kept.pk, own.pk}
    assert Connection.objects.filter(pk=archive.pk).exists()
    assert not deployment.items.filter(component="connection-2").exists()


def test_upgrade_can_change_the_authentication_type_and_the_old_connection_stays(deployer, tree):
    one = version_of()
    deployment, _ = deploy(one, deployer)
    made = Connection.objects.get(name="Records")
    linked = ConnectionFactory(folder=tree["finance"], sandbox=True, name="Existing")
    two = version_of(manifest(), number=2, solution=one.solution)
    state = _upgrade(
        deployment, two, deployer,
        connections={CONNECTION: {"auth": "link_existing", "link": linked.pk}},
    )  # fmt: skip
    assert state == Deployment.State.SUCCEEDED, deployment.error
    assert Connection.objects.filter(pk=made.pk).exists()
    assert Trigger.objects.get().connection == linked
    assert Process.objects.get().requirements.get().connection == linked


def test_edit_changes_unlocked_fields_and_never_the_authentication_type(deployer, tree):
    locked = manifest(
        processes=[{**BASE["processes"][0], "locked": ["webhook_url"]}],
    )
    deployment, _ = deploy(version_of(locked), deployer)
    settings = actions.settings_for_edit(
        deployment, {"connections": {CONNECTION: {"name": "Renamed"}}}
    )
    actions.edit_configuration(deployment=deployment, settings=settings, actor=deployer)
    assert run_all(deployment) == Deployment.State.SUCCEEDED
    assert Connection.objects.get().name == "Renamed"
    # A locked field, or the Authentication type, is refused: nothing written.
    for data in (
        {"processes": {PROCESS: {"webhook_url": "https://elsewhere.example.com/"}}},
        {"connections": {CONNECTION: {"auth": "configurable"}}},
    ):
        settings = settings_doc(deployment.folder_path, **data)
        with pytest.raises(actions.DeployRefused):
            actions.edit_configuration(deployment=deployment, settings=settings, actor=deployer)
    assert deployment.steps.filter(state="pending").count() == 0


def test_link_to_existing_needs_access_to_the_connection(make_user, tree):
    user = make_user("limited")
    assign(user, tree["finance"], "Folder Administrator")
    elsewhere = ConnectionFactory(folder=tree["hr"], sandbox=True, name="Not yours")
    check = preflight.preflight(
        version_of(),
        settings_doc(
            "Shared/Finance/New",
            connections={CONNECTION: {"auth": "link_existing", "link": elsewhere.pk}},
        ),
        user,
    )
    assert [p.where for p in check.blocking] == [f"connections.{CONNECTION}.link"]
    assert elsewhere not in preflight.linkable_connections(user)


def test_removal_removes_what_it_made_apart_from_connections(deployer):
    deployment, _ = deploy(version_of(), deployer, "Shared/Removed")
    connection = Connection.objects.get(name="Records")
    stays = preflight.connections_that_stay(deployment)
    assert stays == [connection]
    actions.remove(deployment=deployment, actor=deployer)
    assert run_all(deployment) == Deployment.State.REMOVED
    assert not Trigger.objects.exists() and not Process.objects.exists()
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert TRIGGER not in set(deployment.items.values_list("component", flat=True))
