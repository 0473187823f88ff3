"""Build and publish, package files down and up: numbered immutable
versions built from the components as they are now, folders relative to
the source folder, never a secret; a deleted component refuses publishing
by name; a malformed or newer-format file is refused whole by field."""

from __future__ import annotations

import json

import pytest

from connections.transfer.format import DocumentRefused
from portal.models import AuditRecord
from solutions import authoring, publishing
from solutions.models import Solution, SolutionVersion
from solutions.package import validate
from tests import leak_guard

pytestmark = pytest.mark.django_db


@pytest.fixture
def solution(world, author):
    solution = authoring.create_solution(
        name="Invoicing", description="Bills", source_folder=world["folder"], actor=author
    )
    authoring.add_components(
        solution, triggers=[world["trigger"]], processes=[world["payments"]], actor=author
    )
    return solution


def test_publishing_numbers_versions_from_the_components_as_they_are(world, solution, author):
    connection = solution.components.get(key=f"connection-{world['records'].pk}")
    authoring.edit_component(connection, properties={"name": "Records (prod)"}, locked=["name"])
    first = publishing.publish(solution, notes="First", actor=author)
    second = publishing.publish(solution, actor=author)
    assert (first.number, second.number) == (1, 2)
    package = validate(first.manifest)
    assert package.format == 1 and package.version == 1
    assert package.solution.name == "Invoicing"
    by_key = {c.key: c for c in package.connections}
    records = by_key[f"connection-{world['records'].pk}"]
    assert (records.name, records.locked, records.folder, records.connector) == (
        "Records (prod)",
        ["name"],
        [],
        "sandbox",
    )
    ledger = by_key[f"connection-{world['ledger'].pk}"]
    assert ledger.folder == ["Payables"]  # relative to the source folder
    [trigger] = package.triggers
    assert trigger.connection == records.key
    assert trigger.process == f"process-{world['invoices'].pk}"
    assert trigger.filters == {"title_contains": "invoice"}
    processes = {p.key: p for p in package.processes}
    invoices = processes[f"process-{world['invoices'].pk}"]
    assert invoices.webhook_url == "https://robots.example.com/hooks/invoices"
    assert [(r.connector, r.connection) for r in invoices.requires] == [("sandbox", records.key)]
    record = AuditRecord.objects.filter(action=AuditRecord.Action.SOLUTION_PUBLISHED).first()
    assert "1 event trigger" in record.detail


def test_a_version_never_changes_when_the_draft_does(world, solution):
    version = publishing.publish(solution)
    frozen = json.dumps(version.manifest, sort_keys=True)
    connection = solution.components.get(key=f"connection-{world['records'].pk}")
    authoring.edit_component(connection, properties={"description": "changed"})
    world["records"].name = "Renamed"
    world["records"].save()
    version.refresh_from_db()
    assert json.dumps(version.manifest, sort_keys=True) == frozen


def test_a_deleted_component_refuses_publishing_by_name(world, solution):
    pk = world["payments"].pk
    world["payments"].delete()
    with pytest.raises(publishing.PublishRefused) as refused:
        publishing.publish(solution)
    assert any(f"process-{pk} (Payments) was deleted" in p for p in refused.value.problems)
    assert not SolutionVersion.objects.exists()


def test_an_empty_solution_is_not_published(world, author):
    empty = authoring.create_solution(name="Empty", source_folder=world["folder"])
    with pytest.raises(publishing.PublishRefused):
        publishing.publish(empty)
    assert not SolutionVersion.objects.exists()


def test_no_secret_is_in_a_package(world, solution, client, author):
    version = publishing.publish(solution)
    client.force_login(author)
    response = client.get(f"/solutions/{solution.pk}/versions/{version.number}/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="invoicing-v1.json"'
    text = response.content.decode()
    assert json.loads(text)["format"] == 1
    # The leak guard saw this answer; it also holds every stored secret.
    stored = {world["signing_secret"], "sbx_solutions_stored_secret_0001"}
    assert stored <= leak_guard.secrets
    assert not [secret for secret in leak_guard.secrets if secret in text]
    assert "whsec_" not in text and "token" not in json.loads(text)["connections"][0]
    assert AuditRecord.objects.filter(action=AuditRecord.Action.SOLUTION_DOWNLOADED).exists()


def test_upload_makes_a_new_solution_or_its_next_version(world, solution, author):
    text = publishing.package_text(publishing.publish(solution))
    # Into a portal without the solution: made in the chosen folder.
    Solution.objects.filter(pk=solution.pk).delete()
    uploaded = publishing.upload_package(text, folder=world["hr"], actor=author)
    assert uploaded.created and uploaded.version.uploaded and uploaded.version.number == 1
    made = uploaded.version.solution
    assert (made.name, made.source_folder) == ("Invoicing", world["hr"])
    again = publishing.upload_package(text.encode(), actor=author)
    assert not again.created and again.version.number == 2
    assert validate(again.version.manifest).version == 2
    assert AuditRecord.objects.filter(action=AuditRecord.Action.SOLUTION_UPLOADED).count() == 2


def _package(world, solution) -> dict:
    return publishing.publish(solution).manifest


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda p: p.update(format=2), "format: version 2 is newer"),
        (lambda p: p.pop("solution"), "solution: Field required"),
        (lambda p: p["connections"][0].update(auth_type="magic"), "connections[0].auth_type"),
        (lambda p: p["triggers"][0].update(connection="connection-999"), "triggers[0].connection"),
        (lambda p: p["connections"][0].update(token="sbx_x"), "connections[0].token"),
    ],
)
def test_a_malformed_or_newer_package_is_refused_whole_naming_the_field(
    world, solution, change, named
):
    package = _package(world, solution)
    change(package)
    versions = SolutionVersion.objects.count()
    with pytest.raises(DocumentRefused) as refused:
        publishing.upload_package(json.dumps(package), folder=world["hr"])
    assert any(problem.startswith(named) for problem in refused.value.problems), refused.value
    assert SolutionVersion.objects.count() == versions


def test_not_json_is_refused(world):
    with pytest.raises(DocumentRefused) as refused:
        publishing.upload_package(b"\xff{", folder=world["hr"])
    assert refused.value.problems[0].startswith("(top level)")
    assert not Solution.objects.exists()
