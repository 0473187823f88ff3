"""Read-only mode: every operation of the API that manages something is
refused with 403 (saying where connections are managed), whatever it is
sent, and changes nothing; reading still works, robots still claim and
finish their jobs. The operations are found by walking the ninja API, so
that a new one cannot be forgotten."""

from __future__ import annotations

import re

import pytest

from connections.api.read_only import ALLOWED, SAFE_METHODS
from connections.api.site import api as ninja_api
from connections.models import Connection, Job, Process, Trigger, TriggerEvent
from connections.triggers import configure, processes
from portal.actions import set_governance
from portal.models import ApiKey, AuditRecord, TenantSettings
from solutions.deploy import actions
from solutions.models import Solution
from tests.connections.api.helpers import API, body, make_connection, snapshot
from tests.factories import ConnectionFactory
from tests.solutions.deploy_helpers import settings_doc, version_of

PORTAL_URL = "http://portal.example.com"


def operations() -> list[tuple[str, str, object]]:
    """(method, path with {name} parameters, operation) of every route."""
    ninja_api.urls  # noqa: B018 (binds the routers)
    found = []
    for prefix, router in ninja_api._routers:
        for path, path_view in router.path_operations.items():
            full = "/" + "/".join(part.strip("/") for part in (prefix, path) if part.strip("/"))
            full = re.sub(r"{\w+:(\w+)}", r"{\1}", full)
            for operation in path_view.operations:
                found.extend((method, full, operation) for method in operation.methods)
    return sorted(found, key=lambda row: (row[1], row[0]))


def managing() -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path, operation in operations()
        if method not in SAFE_METHODS and not (operation.openapi_extra or {}).get(ALLOWED)
    ]


def reading() -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in operations() if method in SAFE_METHODS]


@pytest.fixture(autouse=True)
def _portal(settings):
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = PORTAL_URL


@pytest.fixture
def world(tree, fakehub, tenant_admin):
    """One of everything an operation can name, in Finance."""
    connection = make_connection(tree["finance"])
    records = ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True, name="Records")
    process = processes.create_process(
        folder=tree["finance"],
        name="Book",
        webhook_url="https://hooks.example.com/b",
        job_queue=True,
    ).process
    trigger = configure.create_trigger(
        connection=records, event_key="record_created", filters={}, process=process
    )
    event = TriggerEvent.objects.create(trigger=trigger, provider_id="42", summary="Invoice 42")
    job = Job.objects.create(process=process, trigger=trigger, event=event)
    solution = Solution.objects.create(name="Records", source_folder=tree["finance"])
    version = version_of(solution=solution)
    deployment = actions.deploy(
        version=version, settings=settings_doc("Shared/Finance/Deployed"), actor=tenant_admin
    )
    return {
        "solution_id": solution.pk,
        "number": version.number,
        "deployment_id": deployment.pk,
        "folder_id": tree["finance"].pk,
        "connection_id": connection.pk,
        "process_id": process.pk,
        "trigger_id": trigger.pk,
        "job_id": job.pk,
    }


@pytest.fixture
def admin_api(tenant_admin, api_for):
    return api_for(tenant_admin)


def read_only(on: bool, by) -> None:
    set_governance(allow_shared_connection_creation=True, changed_by=by, read_only=on)


def everything(tree) -> dict:
    return {
        **snapshot(tree["finance"]),
        "connections": Connection.objects.count(),
        "processes": list(Process.objects.values()),
        "triggers": list(Trigger.objects.values()),
        "jobs": list(Job.objects.values()),
        "records": AuditRecord.objects.count(),
        "keys": ApiKey.objects.count(),
    }


def test_the_walk_finds_the_operations_it_should():
    """The walk sees what the schema tests count, so the tests below cover
    every operation: the writes that manage something, and the four that
    run jobs."""
    assert len(operations()) == 48
    assert len(managing()) == 23
    assert ("POST", "/folders/{folder_id}/connections") in managing()
    assert ("POST", "/connections/{connection_id}/check") in managing()
    assert ("POST", "/processes/{process_id}/jobs/claim") not in managing()


@pytest.mark.parametrize("method, path", managing())
def test_every_managing_operation_is_refused_and_changes_nothing(
    method, path, world, tree, tenant_admin, admin_api
):
    read_only(True, tenant_admin)
    before = everything(tree)
    # An empty body: refused before the data is looked at.
    response = admin_api.request(method, API + path.format(**world), body={})
    assert response.status_code == 403, (method, path, response.content[:300])
    detail = body(response)["detail"]
    assert "read-only mode" in detail
    assert "managed in the portal's pages" in detail
    assert f"{PORTAL_URL}/" in detail
    assert everything(tree) == before


@pytest.mark.parametrize("method, path", managing())
def test_a_caller_without_a_valid_key_still_gets_401(method, path, world, tenant_admin, api_for):
    from tests.connections.api.conftest import ApiClient

    read_only(True, tenant_admin)
    response = ApiClient("cpk_not_a_key").request(method, API + path.format(**world), body={})
    assert response.status_code == 401
    assert "read-only" not in body(response)["detail"]


def test_every_read_still_works(world, tree, tenant_admin, admin_api):
    read_only(True, tenant_admin)
    params = {"folder": "Shared/Finance", "connector": "fakehub", "name": "Robot"}
    for method, path in reading():
        response = admin_api.request(method, API + path.format(**world), params=params)
        assert response.status_code != 403, (path, response.content[:300])
        assert response.status_code < 500, (path, response.content[:300])
        if path != "/processes/{process_id}/jobs":
            assert response.status_code == 200, (path, response.content[:300])
    credentials = admin_api.get(f"{API}/connections/{world['connection_id']}/credentials")
    assert credentials.status_code == 200
    assert credentials.json()["secret"]["token"]


def test_robots_still_claim_and_finish_their_jobs(world, tenant_admin, admin_api):
    read_only(True, tenant_admin)
    claimed = admin_api.post(f"{API}/processes/{world['process_id']}/jobs/claim", {})
    assert claimed.status_code == 200, claimed.content
    token = claimed.json()["lease_token"]
    extended = admin_api.post(
        f"{API}/jobs/{world['job_id']}/extend", {"lease_token": token, "lease_seconds": 600}
    )
    assert extended.status_code == 200, extended.content
    done = admin_api.post(
        f"{API}/jobs/{world['job_id']}/complete", {"lease_token": token, "result": "Booked"}
    )
    assert done.status_code == 200, done.content
    assert Job.objects.get(pk=world["job_id"]).state == Job.State.COMPLETED


def test_writes_work_again_when_it_is_turned_off(world, tenant_admin, admin_api):
    read_only(True, tenant_admin)
    url = f"{API}/connections/{world['connection_id']}/disable"
    assert admin_api.post(url).status_code == 403
    read_only(False, tenant_admin)
    assert admin_api.post(url).status_code == 200
    assert not Connection.objects.get(pk=world["connection_id"]).is_enabled


def test_the_settings_endpoint_says_so(db, tenant_admin, admin_api):
    assert admin_api.get(f"{API}/settings").json() == {
        "read_only": False,
        "portal_url": f"{PORTAL_URL}/",
    }
    read_only(True, tenant_admin)
    assert admin_api.get(f"{API}/settings").json()["read_only"] is True
    assert TenantSettings.load().read_only


def test_the_schema_declares_the_refusal(client, db):
    schema = client.get(f"{API}/openapi.json").json()
    refused = set(managing())
    for path, operations_here in schema["paths"].items():
        for method, operation in operations_here.items():
            where = (method.upper(), path.removeprefix(API))
            forbidden = operation["responses"].get("403")
            if where in refused:
                assert forbidden, where
                assert "read-only mode" in forbidden["description"], where
                assert not operation.get(ALLOWED), where
            elif forbidden:
                assert "read-only mode" not in forbidden["description"], where
    for path in (
        "/processes/{process_id}/jobs/claim",
        "/jobs/{job_id}/complete",
        "/jobs/{job_id}/fail",
        "/jobs/{job_id}/extend",
    ):
        assert schema["paths"][API + path]["post"][ALLOWED] is True
