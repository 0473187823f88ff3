"""Replay of an event, editing a process and deleting a connection that has
triggers, through the API: each answer and what it changed, the refusals
(403 naming the permission, 409 naming the triggers, 422 by field), and the
OpenAPI schema declaring them. Who may call them is the permission matrix's
(test_permission_matrix.py)."""

from __future__ import annotations

import pytest
from django.test import TestCase

from connections.models import Connection, Job, Process, Trigger, TriggerEvent
from connections.triggers import configure, processes, replay
from tests.connections.api.helpers import API, body
from tests.factories import ConnectionFactory, assign

HOOK = "https://hooks.example.com/book"


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def connection(tree):
    return ConnectionFactory(folder=tree["finance"], sandbox=True, sealed=True, name="Records")


@pytest.fixture
def made(tree):
    return processes.create_process(
        folder=tree["finance"], name="Book", webhook_url=HOOK, job_queue=True
    )


@pytest.fixture
def trigger(connection, made):
    return configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=made.process
    )


@pytest.fixture
def job(trigger):
    event = TriggerEvent.objects.create(trigger=trigger, provider_id="42", summary="Invoice 42")
    return Job.objects.create(
        process=trigger.process,
        trigger=trigger,
        event=event,
        webhook_id="msg_first",
        delivery_state=Job.DeliveryState.DELIVERED,
    )


# --- Replay ----------------------------------------------------------------------------


def test_replay_makes_a_new_job_with_a_new_webhook_id(api, job, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr("connections.api.jobs.enqueue_deliveries", sent.extend)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = api.post(f"{API}/jobs/{job.pk}/replay")
    assert response.status_code == 201, response.content
    answer = response.json()
    replayed = Job.objects.get(pk=answer["id"])
    assert answer["replay_of"] == job.pk and replayed.replay_of_id == job.pk
    assert answer["event"]["provider_id"] == "42"
    assert answer["delivery_state"] == "pending" and answer["state"] == "pending"
    assert replayed.webhook_id not in ("", job.webhook_id)
    assert sent == [replayed.pk]
    # The events list shows the poll's job and its replay.
    events = api.get(f"{API}/triggers/{job.trigger_id}/events").json()["items"]
    assert events[0]["job"]["id"] == job.pk
    assert [each["id"] for each in events[0]["replays"]] == [replayed.pk]
    # Replaying the replay points at the event's first job too.
    again = api.post(f"{API}/jobs/{replayed.pk}/replay").json()
    assert again["replay_of"] == job.pk


def test_replay_needs_processes_manage(as_role, job):
    for role in ("Viewer", "Automation User"):
        response = as_role(role).post(f"{API}/jobs/{job.pk}/replay")
        assert response.status_code == 403, role
        assert body(response)["detail"] == "You do not have Processes - Manage in this folder."
    assert Job.objects.count() == 1


@pytest.fixture
def as_role(make_user, tree, api_for):
    def make(role: str):
        user = make_user(role.lower().replace(" ", "-"))
        assign(user, tree["finance"], role)
        return api_for(user)

    return make


# --- Edit a process -------------------------------------------------------------------


def test_patch_a_process_keeps_its_secret(api, made, connection):
    process = made.process
    response = api.patch(
        f"{API}/processes/{process.pk}",
        {
            "name": "Book everything",
            "webhook_url": "https://hooks.example.com/v2",
            "requirements": {"sandbox": connection.pk},
        },
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["name"] == "Book everything" and answer["signing_secret"] is None
    assert answer["webhook_url"] == "https://hooks.example.com/v2"
    assert answer["requirements"][0]["connection_id"] == connection.pk
    assert answer["description"] == "" and answer["job_queue"] is True  # not sent: unchanged
    process.refresh_from_db()
    assert processes.signing_secret(process) == made.signing_secret
    # requirements is the whole set: {} requires nothing.
    assert (
        api.patch(f"{API}/processes/{process.pk}", {"requirements": {}}).json()["requirements"]
        == []
    )


def test_patch_a_first_webhook_answers_its_secret_once(api, tree):
    queue = processes.create_process(folder=tree["finance"], name="Queue", job_queue=True).process
    answer = api.patch(f"{API}/processes/{queue.pk}", {"webhook_url": HOOK}).json()
    queue.refresh_from_db()
    assert answer["signing_secret"] == processes.signing_secret(queue)
    assert "signing_secret" not in api.get(f"{API}/processes/{queue.pk}").json()


def test_patch_refusals_by_field_change_nothing(api, made, tree):
    process = made.process
    processes.create_process(folder=tree["finance"], name="Taken", job_queue=True)
    before = Process.objects.filter(pk=process.pk).values().get()
    cases = [
        ({"name": ""}, "name", "Give the process a name."),
        ({"name": "Taken"}, "name", "Finance already has a process named Taken."),
        ({"webhook_url": "ftp://x"}, "webhook_url", "Enter a full https:// address for the"),
        (
            {"webhook_url": "", "job_queue": False},
            "webhook_url",
            "Give a webhook address, or let robots pull its jobs, or both.",
        ),
        ({"requirements": {"sandbox": 999999}}, "requirements", "Finance has no connection"),
    ]
    for sent, field, message in cases:
        response = api.patch(f"{API}/processes/{process.pk}", sent)
        assert response.status_code == 422, (sent, response.content)
        assert body(response)["errors"][field][0].startswith(message), (sent, body(response))
        assert Process.objects.filter(pk=process.pk).values().get() == before


# --- Delete a connection that has triggers -------------------------------------------


def test_delete_a_connection_with_triggers_needs_the_confirmation(api, connection, trigger, job):
    response = api.delete(f"{API}/connections/{connection.pk}")
    assert response.status_code == 409
    detail = body(response)["detail"]
    assert "Records has 1 trigger (Record created → Book)" in detail
    assert "delete_triggers=true" in detail
    assert Connection.objects.filter(pk=connection.pk).exists() and Trigger.objects.exists()
    assert Job.objects.exists()

    response = api.delete(f"{API}/connections/{connection.pk}?delete_triggers=true")
    assert response.status_code == 204, response.content
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not Trigger.objects.exists() and not Job.objects.exists()


def test_delete_a_connection_without_triggers_needs_nothing(api, connection):
    assert api.delete(f"{API}/connections/{connection.pk}").status_code == 204


def test_the_schema_declares_them(client, db):
    schema = client.get(f"{API}/openapi.json").json()
    delete = schema["paths"][f"{API}/connections/{{connection_id}}"]["delete"]
    assert "409" in delete["responses"]
    params = {param["name"]: param for param in delete["parameters"]}
    assert params["delete_triggers"]["in"] == "query"
    assert "409" in delete["description"] or "409" in delete.get("summary", "")
    replay_op = schema["paths"][f"{API}/jobs/{{job_id}}/replay"]["post"]
    assert "201" in replay_op["responses"] and "403" in replay_op["responses"]
    patch = schema["paths"][f"{API}/processes/{{process_id}}"]["patch"]
    assert "422" in patch["responses"]


def test_replay_through_the_domain_shows_in_job_answers(api, job):
    replayed = replay.replay_event(job.event)
    trigger = job.trigger
    Job.objects.filter(pk__in=[job.pk, replayed.pk]).update(state=Job.State.PENDING)
    jobs = api.get(f"{API}/processes/{trigger.process_id}/jobs").json()["items"]
    assert {each["id"]: each["replay_of"] for each in jobs} == {
        job.pk: None,
        replayed.pk: job.pk,
    }
