"""Authoring a solution: picked components and what they bring along,
properties edited and locked as the connection and trigger pages validate
them, refusals by field that change nothing, removal with what needs it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from portal.models import AuditRecord
from solutions import authoring
from solutions.models import Component, Solution

pytestmark = pytest.mark.django_db


@pytest.fixture
def solution(world, author):
    return authoring.create_solution(name="Invoicing", source_folder=world["folder"], actor=author)


def keys(solution: Solution) -> set[str]:
    return set(solution.components.values_list("key", flat=True))


def test_a_solution_is_made_in_its_source_folder_and_audited(world, author):
    solution = authoring.create_solution(
        name="  Invoicing ", description="Bills", source_folder=world["folder"], actor=author
    )
    assert (solution.name, solution.source_folder, solution.created_by) == (
        "Invoicing",
        world["folder"],
        author,
    )
    record = AuditRecord.objects.get(action=AuditRecord.Action.SOLUTION_CREATED)
    assert record.target_name == "Invoicing" and record.folder_id == world["folder"].pk


@pytest.mark.parametrize(
    "name, message",
    [("", "Give the solution a name."), ("x" * 121, "too long"), ("invoicing", "already")],
)
def test_a_bad_name_is_refused_by_field(world, solution, name, message):
    with pytest.raises(ValidationError) as refused:
        authoring.create_solution(name=name, source_folder=world["folder"])
    assert message in refused.value.message_dict["name"][0]
    assert Solution.objects.count() == 1


def test_picking_a_trigger_brings_its_connection_and_process(world, solution, author):
    added = authoring.add_components(solution, triggers=[world["trigger"]], actor=author)
    r, p, t = world["records"].pk, world["invoices"].pk, world["trigger"].pk
    assert {c.key for c in added} == {f"trigger-{t}", f"connection-{r}", f"process-{p}"}
    connection = solution.components.get(key=f"connection-{r}")
    assert connection.properties == {
        "name": "Records",
        "description": "The records",
        "auth_type": "pat",
    }
    trigger = solution.components.get(key=f"trigger-{t}")
    assert trigger.properties == {
        "filters": {"title_contains": "invoice"},
        "enabled": True,
        "include_existing": False,
    }
    # Picking again adds nothing.
    assert authoring.add_components(solution, triggers=[world["trigger"]]) == []
    assert AuditRecord.objects.filter(action=AuditRecord.Action.SOLUTION_EDITED).count() == 1


def test_a_process_brings_the_connections_it_requires_without_a_trigger(world, solution):
    authoring.add_components(solution, processes=[world["payments"]])
    assert keys(solution) == {f"process-{world['payments'].pk}", f"connection-{world['ledger'].pk}"}


def test_the_panel_offers_the_required_connections_a_trigger_does_not_link(world, solution, author):
    authoring.add_components(solution, processes=[world["payments"]])
    Component.objects.filter(key=f"connection-{world['ledger'].pk}").delete()
    offered = authoring.candidates(solution, author)
    assert offered.required == [world["ledger"]]
    authoring.add_components(solution, connections=offered.required)
    assert f"connection-{world['ledger'].pk}" in keys(solution)
    assert authoring.candidates(solution, author).required == []


def test_candidates_are_the_source_folder_and_below_the_author_may_see(world, solution, author):
    offered = authoring.candidates(solution, author)
    assert {c.name for c in offered.connections} == {"Records", "Ledger"}
    assert {p.name for p in offered.processes} == {"Invoices", "Payments"}
    assert offered.triggers == [world["trigger"]]


def test_an_object_outside_the_source_folder_is_refused(world, author):
    solution = authoring.create_solution(name="Payables", source_folder=world["payables"])
    with pytest.raises(ValidationError):
        authoring.add_components(solution, triggers=[world["trigger"]])
    assert keys(solution) == set()  # nothing, not even what came first


def test_editing_properties_and_locks(world, solution, author):
    authoring.add_components(solution, triggers=[world["trigger"]])
    connection = solution.components.get(kind="connection")
    authoring.edit_component(
        connection,
        properties={"name": "Records (prod)", "auth_type": "oauth2_authorization_code"},
        locked=["auth_type"],
        actor=author,
    )
    connection.refresh_from_db()
    assert connection.properties["name"] == "Records (prod)"
    assert connection.properties["auth_type"] == "oauth2_authorization_code"
    assert connection.locked == ["auth_type"]
    # The connection in its folder is not changed.
    world["records"].refresh_from_db()
    assert world["records"].name == "Records"

    authoring.set_locked(connection, "name", True)
    connection.refresh_from_db()
    assert connection.locked == ["name", "auth_type"]
    authoring.set_locked(connection, "auth_type", False)
    connection.refresh_from_db()
    assert connection.locked == ["name"]


@pytest.mark.parametrize(
    "kind, properties, field",
    [
        ("connection", {"name": " "}, "name"),
        ("connection", {"auth_type": "basic"}, "auth_type"),
        ("connection", {"description": "x" * 501}, "description"),
        ("trigger", {"filters": {"title_contains": "x" * 5000}}, "filters.title_contains"),
        ("process", {"webhook_url": "not an address"}, "webhook_url"),
        ("process", {"webhook_url": "", "job_queue": False}, "webhook_url"),
    ],
)
def test_a_refused_property_names_its_field_and_changes_nothing(
    world, solution, kind, properties, field
):
    authoring.add_components(solution, triggers=[world["trigger"]])
    component = solution.components.get(kind=kind)
    before = (dict(component.properties), list(component.locked))
    with pytest.raises(ValidationError) as refused:
        authoring.edit_component(component, properties=properties, locked=["name"])
    assert field in refused.value.message_dict
    component.refresh_from_db()
    assert (component.properties, component.locked) == before


def test_a_lock_on_a_property_the_kind_has_not_is_refused(world, solution):
    authoring.add_components(solution, triggers=[world["trigger"]])
    trigger = solution.components.get(kind="trigger")
    with pytest.raises(ValidationError) as refused:
        authoring.edit_component(trigger, locked=["name"])
    assert "locked" in refused.value.message_dict


def test_removing_a_connection_removes_the_triggers_that_need_it(world, solution):
    authoring.add_components(solution, triggers=[world["trigger"]])
    connection = solution.components.get(kind="connection")
    assert [c.kind for c in authoring.removal_impact(connection)] == ["trigger"]
    removed = authoring.remove_component(connection)
    assert set(removed) == {connection.key, f"trigger-{world['trigger'].pk}"}
    assert keys(solution) == {f"process-{world['invoices'].pk}"}
    # The objects themselves stay.
    world["records"].refresh_from_db()
    world["trigger"].refresh_from_db()
