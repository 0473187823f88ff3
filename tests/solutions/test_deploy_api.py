"""Deployments through the API: a settings document gives the same result as
the same choices made in the pages; the document is validated like the
form (each problem by where it is, nothing written); the preflight writes
nothing; status with its steps; upgrade, edit configuration and removal; a
deployment busy or removed answers 409; read-only mode refuses the writes."""

from __future__ import annotations

import pytest
from django.urls import reverse

from connections.models import Connection
from portal import api_keys
from portal.actions import set_governance
from solutions.deploy import actions, engine
from solutions.models import Deployment, Solution
from tests.connections.api.conftest import ApiClient
from tests.factories import ConnectionFactory, assign
from tests.solutions.deploy_helpers import (
    CONNECTION,
    PROCESS,
    TRIGGER,
    manifest,
    picture,
    version_of,
)

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture
def deployer(make_user, tree):
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    return user


@pytest.fixture
def api(deployer):
    return ApiClient(api_keys.issue(owner=deployer, name="pipeline", actor=deployer).raw)


@pytest.fixture
def version(tree):
    solution = Solution.objects.create(name="Records", source_folder=tree["finance"])
    return version_of(solution=solution)


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch):
    """The test plays the worker: nothing is sent to a broker."""
    monkeypatch.setattr(actions.run_deployment_task, "delay_on_commit", lambda *a: None)


def _deploy_url(version) -> str:
    return f"{API}/solutions/{version.solution_id}/versions/{version.number}/deployments"


def _without_ids(shot: dict) -> dict:
    """What a deployment made, whatever the row ids and who made it."""

    def strip(rows, *names):
        skip = {
            "id",
            "created_by_id",
            "folder_id",
            "connection_id",
            "process_id",
            "deployment_id",
            "object_id",
            "path",
            "parent_id",
            "signing_secret",
            "signing_secret_ciphertext",
            "ciphertext",
        }
        return sorted(
            (tuple(sorted((k, str(v)) for k, v in row.items() if k not in skip | set(names)))
             for row in rows),
        )  # fmt: skip

    return {name: strip(rows) for name, rows in shot.items()}


@pytest.mark.parametrize("auth", ["authenticate_after", "link_existing", "configurable"])
def test_a_settings_document_gives_the_same_result_as_the_pages(
    client, api, deployer, version, tree, auth
):
    existing = ConnectionFactory(folder=tree["hr"], sandbox=True, name="Existing records")
    before = picture()
    choice = {"auth": auth, "name": "Records", "description": "The records"}
    if auth == "link_existing":
        choice["link"] = existing.pk
    document = {
        "folder": "Shared/Deployed",
        "connections": {CONNECTION: choice},
        "processes": {PROCESS: {"name": "Book", "description": ""}},
        "triggers": {TRIGGER: {"enabled": True}},
    }
    response = api.post(_deploy_url(version), document)
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["state"] == "planned" and not answer["finished"]
    assert engine.run(answer["id"]) == Deployment.State.SUCCEEDED
    by_api = _without_ids(picture())

    # The same choices in the pages, from the same start.
    Deployment.objects.all().delete()
    _undo_all(before)
    assert _without_ids(picture()) == _without_ids(before)
    client.force_login(deployer)
    form = {
        "folder": "Shared/Deployed",
        f"{CONNECTION}__auth": auth,
        f"{CONNECTION}__link": str(existing.pk) if auth == "link_existing" else "",
        f"{CONNECTION}__name": "Records",
        f"{CONNECTION}__description": "The records",
        f"{PROCESS}__name": "Book",
        f"{PROCESS}__description": "",
        # As a browser sends the form: the package's webhook, job queue unticked.
        f"{PROCESS}__webhook_url": "https://hooks.example.com/book",
        f"{TRIGGER}__enabled": "on",
        f"{TRIGGER}__filter_title_contains": "invoice",
        "step": "deploy",
    }
    url = reverse("solution_version_deploy", args=[version.solution_id, version.number])
    assert client.post(url, form).status_code == 302
    assert engine.run(Deployment.objects.get().pk) == Deployment.State.SUCCEEDED
    assert _without_ids(picture()) == by_api


def _undo_all(before: dict) -> None:
    """Back to ``before``: delete what the deployment made (rows not there before)."""
    from connections.models import Process, Trigger
    from portal.models import Folder

    Trigger.objects.exclude(pk__in=[r["id"] for r in before["triggers"]]).delete()
    Process.objects.exclude(pk__in=[r["id"] for r in before["processes"]]).delete()
    Connection.objects.exclude(pk__in=[r["id"] for r in before["connections"]]).delete()
    Folder.objects.exclude(pk__in=[r["id"] for r in before["folders"]]).delete()


def test_the_document_is_refused_by_where_and_nothing_is_written(api, version, tree):
    before = picture()
    cases = [
        ({"connections": {CONNECTION: {"auth": "magic"}}}, f"connections.{CONNECTION}.auth"),
        ({"connections": {"nonsense": {}}}, "connections.nonsense.[key]"),
        ({"processes": {PROCESS: {"name": "a\x00b"}}}, f"processes.{PROCESS}.name"),
        ({"colour": "blue"}, "colour"),
    ]
    for extra, where in cases:
        response = api.post(_deploy_url(version), {"folder": "Shared/Deployed", **extra})
        assert response.status_code == 422, response.content
        assert where in response.json()["errors"], response.json()
    # Blocking preflight problems: refused the same way, by where they are.
    ConnectionFactory(folder=tree["finance"], sandbox=True, name="Records")
    response = api.post(_deploy_url(version), {"folder": "Shared/Finance"})
    assert response.status_code == 422
    assert "already exists" in response.json()["errors"][f"connections.{CONNECTION}.name"][0]
    assert picture()["folders"] == before["folders"] and not Deployment.objects.exists()


def test_preflight_writes_nothing(api, version):
    before = picture()
    url = f"{API}/solutions/{version.solution_id}/versions/1/preflight"
    answer = api.post(url, {"folder": "Shared/Deployed"}).json()
    assert answer["ok"] is True and answer["folder"] == "Shared/Deployed"
    assert {"create"} <= {step["action"] for step in answer["plan"]}
    assert picture() == before and not Deployment.objects.exists()


def test_status_upgrade_edit_and_removal(api, version, tree):
    answer = api.post(_deploy_url(version), {"folder": "Shared/Deployed"}).json()
    deployment_id = answer["id"]
    # Not finished: changes wait (409).
    assert api.delete(f"{API}/deployments/{deployment_id}").status_code == 409
    engine.run(deployment_id)
    status = api.get(f"{API}/deployments/{deployment_id}").json()
    assert status["state"] == "succeeded" and status["finished"]
    assert [s["state"] for s in status["steps"]] == ["done"] * len(status["steps"])
    assert {i["component"] for i in status["items"]} == {CONNECTION, PROCESS, TRIGGER}

    # Edit: a name, never the Authentication type.
    url = f"{API}/deployments/{deployment_id}/configuration"
    refused = api.patch(url, {"connections": {CONNECTION: {"auth": "configurable"}}})
    assert refused.status_code == 422
    assert "upgrade the deployment" in refused.json()["detail"]
    response = api.patch(url, {"connections": {CONNECTION: {"name": "Renamed"}}})
    assert response.status_code == 202, response.content
    engine.run(deployment_id)
    assert Connection.objects.get(folder__name="Deployed").name == "Renamed"

    # Upgrade to version 2 (without the trigger), its preflight first.
    data = manifest()
    data["triggers"] = []
    version_of(data, number=2, solution=version.solution)
    check = api.post(f"{API}/deployments/{deployment_id}/upgrade/preflight?version=2", {})
    assert check.status_code == 200 and "delete" in {s["action"] for s in check.json()["plan"]}
    moved = api.post(
        f"{API}/deployments/{deployment_id}/upgrade?version=2", {"folder": "Shared/Elsewhere"}
    )
    assert moved.status_code == 422 and "folder" in moved.json()["errors"]
    response = api.post(f"{API}/deployments/{deployment_id}/upgrade?version=2", {})
    assert response.status_code == 202, response.content
    engine.run(deployment_id)
    status = api.get(f"{API}/deployments/{deployment_id}").json()
    assert (status["version"], status["upgraded_from"], status["mode"]) == (2, 1, "upgrade")

    # Removal: connections stay; a second removal answers 409.
    assert api.delete(f"{API}/deployments/{deployment_id}").status_code == 202
    engine.run(deployment_id)
    assert api.get(f"{API}/deployments/{deployment_id}").json()["state"] == "removed"
    assert Connection.objects.filter(name="Renamed").exists()
    assert api.delete(f"{API}/deployments/{deployment_id}").status_code == 409
    listed = api.get(f"{API}/solutions/{version.solution_id}/deployments").json()["items"]
    assert [d["id"] for d in listed] == [deployment_id]


def test_read_only_mode_refuses_deploying_but_not_the_preflight(api, version, tenant_admin):
    set_governance(allow_shared_connection_creation=True, changed_by=tenant_admin, read_only=True)
    assert api.post(_deploy_url(version), {"folder": "Shared/Deployed"}).status_code == 403
    url = f"{API}/solutions/{version.solution_id}/versions/1/preflight"
    assert api.post(url, {"folder": "Shared/Deployed"}).status_code == 200
    assert not Deployment.objects.exists()
