"""A solution from one portal to another: authored and published here,
downloaded, uploaded into a portal that holds none of it, deployed there
with "Authenticate after deployment is done". No secret is in the package;
what the deployment made matches the manifest: the folders, the connections
(Not yet connected, shown as System), the triggers (paused until someone
authenticates) and the processes."""

from __future__ import annotations

import pytest

from connections.models import Connection, ConnectionState, Credential, Process, Trigger
from connections.triggers.polling import paused_because
from portal.models import Folder
from solutions import authoring, publishing
from solutions.models import Deployment, Solution
from solutions.package import parse
from tests import leak_guard
from tests.solutions.deploy_helpers import deploy

pytestmark = pytest.mark.django_db


def test_publish_download_upload_elsewhere_and_deploy(world, author, tenant_admin):
    solution = authoring.create_solution(
        name="Invoicing", description="Bills", source_folder=world["folder"], actor=author
    )
    authoring.add_components(
        solution, triggers=[world["trigger"]], processes=[world["payments"]], actor=author
    )
    text = publishing.download_package(publishing.publish(solution, actor=author), actor=author)
    stored = {world["signing_secret"], *leak_guard.secrets}
    assert not [secret for secret in stored if secret and secret in text]
    package = parse(text)

    # The other portal: none of the solution, its connections or processes.
    Solution.objects.all().delete()
    Trigger.objects.all().delete()
    Process.objects.all().delete()
    Connection.objects.all().delete()
    uploaded = publishing.upload_package(text, folder=world["hr"], actor=tenant_admin)
    deployment, state = deploy(uploaded.version, tenant_admin, folder="Shared/Billing")
    assert state == Deployment.State.SUCCEEDED, deployment.error

    target = Folder.objects.get(name="Billing", parent=world["shared"])
    made = Connection.objects.filter(folder__path__startswith=target.path).order_by("name")
    assert [(c.name, c.connector_key, c.auth_type) for c in made] == sorted(
        (c.name, c.connector, c.auth_type) for c in package.connections
    )
    for connection in made:
        assert connection.state == ConnectionState.NOT_CONNECTED
        assert connection.authenticated_by is None  # shown as System
        assert not Credential.objects.filter(connection=connection).exists()
    processes = Process.objects.filter(folder__path__startswith=target.path)
    assert sorted(p.name for p in processes) == sorted(p.name for p in package.processes)
    triggers = Trigger.objects.filter(connection__in=made).select_related("connection")
    assert [(t.event_key, t.filters) for t in triggers] == [
        (t.event, t.filters) for t in package.triggers
    ]
    assert all(paused_because(t.connection) for t in triggers)
    # The folders below the source folder came along, relative to the target.
    assert Folder.objects.filter(name="Payables", parent=target).exists()
