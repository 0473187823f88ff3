"""Each Authentication type of a connection component, deployed: a new
connection Not yet connected (System until authenticated, its trigger
paused), a linked connection of another folder, or an unbound requirement
chosen at run time."""

from __future__ import annotations

import pytest

from connections.models import Connection, ConnectionState, Process, Trigger
from connections.runtime import connection_in_folder
from connections.triggers.polling import paused_because
from portal.models import AuditRecord, Folder
from solutions.models import DeployedItem, Deployment
from tests.factories import ConnectionFactory, assign
from tests.solutions.deploy_helpers import CONNECTION, PROCESS, TRIGGER, deploy, version_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployer(make_user, tree):
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    return user


def test_authenticate_after_deployment_creates_a_new_folder_and_a_connection_not_yet_connected(
    deployer, tree
):
    deployment, state = deploy(version_of(), deployer, "Shared/Deployed/Records")
    assert state == Deployment.State.SUCCEEDED, deployment.error
    folder = Folder.objects.get(name="Records", parent__name="Deployed")
    assert deployment.folder == folder
    connection = Connection.objects.get(folder=folder)
    assert connection.state == ConnectionState.NOT_CONNECTED
    assert connection.authenticated_by is None  # shown as System
    assert not hasattr(connection, "credential") or connection.credential is None
    trigger = Trigger.objects.get(connection=connection)
    assert trigger.enabled and paused_because(connection)  # paused until authenticated
    process = Process.objects.get(folder=folder)
    assert process.requirements.get().connection == connection
    assert trigger.process == process
    items = {i.component: i for i in deployment.items.all()}
    assert items[CONNECTION].auth_choice == "authenticate_after" and items[CONNECTION].created
    assert items[PROCESS].object_id == process.pk and items[TRIGGER].object_id == trigger.pk
    assert AuditRecord.objects.filter(action=AuditRecord.Action.SOLUTION_DEPLOYED).count() == 1


def test_link_to_existing_creates_the_folder_with_no_connection_in_it(deployer, tree):
    existing = ConnectionFactory(folder=tree["finance"], sandbox=True, name="Shared records")
    deployment, state = deploy(
        version_of(),
        deployer,
        "Shared/Linked",
        connections={CONNECTION: {"auth": "link_existing", "link": existing.pk}},
    )
    assert state == Deployment.State.SUCCEEDED, deployment.error
    folder = Folder.objects.get(name="Linked")
    assert not Connection.objects.filter(folder=folder).exists()
    assert Trigger.objects.get().connection == existing
    process = Process.objects.get(folder=folder)
    assert process.requirements.get().connection == existing
    item = deployment.items.get(component=CONNECTION)
    assert (item.object_id, item.created, item.auth_choice) == (existing.pk, False, "link_existing")


def test_configurable_by_users_leaves_the_requirement_to_choose_at_run_time(deployer, tree):
    deployment, state = deploy(
        version_of(), deployer, "Shared/Configurable",
        connections={CONNECTION: {"auth": "configurable"}},
    )  # fmt: skip
    assert state == Deployment.State.SUCCEEDED, deployment.error
    folder = Folder.objects.get(name="Configurable")
    assert not Connection.objects.filter(folder=folder).exists()
    assert not Trigger.objects.exists()  # a trigger needs a connection: not created
    requirement = Process.objects.get(folder=folder).requirements.get()
    assert requirement.connector_key == "sandbox" and requirement.connection is None
    item = deployment.items.get(component=CONNECTION)
    assert item.object_id is None and item.auth_choice == DeployedItem.AuthChoice.CONFIGURABLE
    # The runtime API's selection resolves it once the folder has one.
    chosen = ConnectionFactory(folder=folder, sandbox=True, name="Chosen later")
    assert connection_in_folder(folder, "sandbox") == chosen


def test_an_existing_folder_is_used(deployer, tree):
    deployment, state = deploy(version_of(), deployer, "Shared/Finance")
    assert state == Deployment.State.SUCCEEDED, deployment.error
    assert deployment.folder == tree["finance"]
    assert Connection.objects.filter(folder=tree["finance"], name="Records").exists()
