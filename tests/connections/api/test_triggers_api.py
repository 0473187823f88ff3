"""Processes, triggers, their events and the job queue through the API, as
automations call it: each operation's answer and what it changed, and its
refusals (by field, 409 naming what is wrong, 403 naming the permission,
404 out of sight or out of the key's scope), never a secret."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from connections.models import Job, Process, Trigger, TriggerEvent
from connections.triggers import configure, processes
from connections.triggers.tasks import deliver_jobs_task, poll_now_task
from tests import leak_guard
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
def process(tree):
    return processes.create_process(
        folder=tree["finance"], name="Book", webhook_url=HOOK, job_queue=True
    ).process


@pytest.fixture
def trigger(connection, process):
    return configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )


@pytest.fixture
def add_job(trigger, process):
    def add(provider_id: str) -> Job:
        event = TriggerEvent.objects.create(
            trigger=trigger, provider_id=provider_id, summary=f"Record {provider_id}"
        )
        return Job.objects.create(process=process, trigger=trigger, event=event)

    return add


@pytest.fixture
def as_role(make_user, tree, api_for):
    def make(role: str, *, scope=None):
        user = make_user(role.lower().replace(" ", "-"))
        assign(user, tree["finance"], role)
        return api_for(user, folder=scope)

    return make


def refused(response, status: int, detail: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:400])
    answer = body(response)
    if detail is not None:
        assert answer["detail"] == detail, answer
    return answer


# --- Processes --------------------------------------------------------------


def test_create_a_process_shows_its_secret_once(api, tree, connection):
    response = api.post(
        f"{API}/folders/{tree['finance'].pk}/processes",
        {
            "name": "Book invoices",
            "description": "Books what arrives.",
            "webhook_url": HOOK,
            "job_queue": True,
            "requirements": {"sandbox": connection.pk},
        },
    )
    assert response.status_code == 201, response.content
    made = response.json()
    secret = made["signing_secret"]
    assert secret.startswith("whsec_")
    process = Process.objects.get(pk=made["id"])
    assert processes.signing_secret(process) == secret
    assert made["has_signing_secret"] and made["job_queue"] and made["webhook_url"] == HOOK
    assert made["requirements"] == [
        {
            "connector": "sandbox",
            "connection_id": connection.pk,
            "connection_name": "Records",
            "connection_state": "connected",
        }
    ]
    # Never again.
    one = api.get(f"{API}/processes/{process.pk}")
    listed = api.get(f"{API}/folders/{tree['finance'].pk}/processes")
    for answer in (one, listed):
        assert answer.status_code == 200
        assert secret not in answer.content.decode()
        assert '"signing_secret"' not in answer.content.decode()
    assert [item["id"] for item in listed.json()["items"]] == [process.pk]


def _answer_recorded(method: str, path: str) -> tuple[str, str, frozenset[str]]:
    return [each for each in leak_guard.outputs if each[0] == f"page {method} {path}"][-1]


def test_the_leak_guard_lets_an_answer_show_only_the_secret_its_request_made(api, tree, connection):
    """A creation (201) or an edit (PATCH 200) may show the signing secret
    sealed while it was served; every other secret is searched for in it,
    and an edit that made none is searched like any answer."""
    path = f"{API}/folders/{tree['finance'].pk}/processes"
    made = api.post(path, {"name": "Guarded", "webhook_url": HOOK}).json()
    assert _answer_recorded("POST", path)[2] == {made["signing_secret"]}
    edit = f"{API}/processes/{made['id']}"
    assert api.patch(edit, {"description": "Renamed"}).status_code == 200
    _, text, shown = _answer_recorded("PATCH", edit)
    assert shown == frozenset() and made["signing_secret"] not in text


def test_a_process_without_a_webhook_has_no_secret(api, tree):
    response = api.post(
        f"{API}/folders/{tree['finance'].pk}/processes", {"name": "Pulled", "job_queue": True}
    )
    assert response.status_code == 201
    assert response.json()["signing_secret"] is None
    assert not response.json()["has_signing_secret"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": " "}, "name"),
        ({"name": "Book"}, "name"),  # taken
        ({"webhook_url": "not an address"}, "webhook_url"),
        ({"webhook_url": "", "job_queue": False}, "webhook_url"),
        ({"requirements": {"sandbox": 10**9}}, "requirements"),
        ({"requirements": {"no-such-connector": None}}, "requirements"),
        ({"webhook_url": "https://hooks.example.com/" + "x" * 500}, "webhook_url"),
    ],
)
def test_a_bad_process_is_refused_by_field(api, tree, process, data, field):
    values = {"name": "New", "webhook_url": HOOK, **data}
    answer = refused(api.post(f"{API}/folders/{tree['finance'].pk}/processes", values), 422)
    assert field in answer["errors"], answer
    assert Process.objects.count() == 1


def test_a_connection_of_another_folder_is_not_required(api, tree):
    elsewhere = ConnectionFactory(folder=tree["hr"], sandbox=True, name="HR records")
    answer = refused(
        api.post(
            f"{API}/folders/{tree['finance'].pk}/processes",
            {"name": "P", "job_queue": True, "requirements": {"sandbox": elsewhere.pk}},
        ),
        422,
    )
    assert "HR records" not in answer["detail"]  # not told what is out of sight
    assert not Process.objects.exists()


def test_process_refusals(as_role, api, tree, process):
    viewer = as_role("Viewer")
    refused(
        viewer.post(
            f"{API}/folders/{tree['finance'].pk}/processes", {"name": "P", "job_queue": True}
        ),
        403,
        "You do not have Processes - Manage in this folder.",
    )
    user = as_role("Automation User")  # no Processes - View
    refused(
        user.get(f"{API}/processes/{process.pk}"),
        403,
        "You do not have Processes - View in this folder.",
    )
    hidden = processes.create_process(folder=tree["hr"], name="Hidden", job_queue=True).process
    invisible = api.get(f"{API}/processes/{hidden.pk}")
    missing = api.get(f"{API}/processes/{hidden.pk + 1000}")
    assert invisible.status_code == missing.status_code == 404
    assert invisible.json() == missing.json() == {"detail": "No such process."}
    refused(api.get(f"{API}/folders/{tree['hr'].pk}/processes"), 404)
    scoped = as_role("Automation Developer", scope=tree["payables"])
    refused(scoped.get(f"{API}/processes/{process.pk}"), 404, "No such process.")
    assert Process.objects.count() == 2


# --- Triggers ---------------------------------------------------------------


def test_create_a_trigger_and_list_it(api, connection, process):
    response = api.post(
        f"{API}/connections/{connection.pk}/triggers",
        {
            "event": "record_created",
            "filters": {"title_contains": "Invoice"},
            "process_id": process.pk,
        },
    )
    assert response.status_code == 201, response.content
    made = response.json()
    trigger = Trigger.objects.get()
    assert made["id"] == trigger.pk and made["status"] == "active"
    assert made["filters"] == {"title_contains": "Invoice"} and made["process_name"] == "Book"
    assert made["next_poll_at"] is not None and made["paused_because"] is None
    listed = api.get(f"{API}/connections/{connection.pk}/triggers").json()
    assert [item["id"] for item in listed["items"]] == [trigger.pk] and listed["count"] == 1
    assert api.get(f"{API}/triggers/{trigger.pk}").json()["event_name"] == made["event_name"]


def test_a_paused_trigger_says_why(api, connection, trigger):
    connection.is_enabled = False
    connection.save()
    item = api.get(f"{API}/connections/{connection.pk}/triggers").json()["items"][0]
    assert item["status"] == "paused"
    assert item["paused_because"] == "Paused: Records is disabled."
    refused(api.post(f"{API}/triggers/{trigger.pk}/poll"), 409, "Paused: Records is disabled.")


def test_missing_scopes_are_refused_naming_them(api, tree, process):
    connection = ConnectionFactory(
        folder=tree["finance"],
        sandbox=True,
        auth_type="oauth2_authorization_code",
        name="Signed in",
        secret={"access_token": "sandbox-access-1", "refresh_token": "r" * 12, "scope": "profile"},
    )
    answer = refused(
        api.post(
            f"{API}/connections/{connection.pk}/triggers",
            {"event": "record_created", "process_id": process.pk},
        ),
        409,
    )
    assert "was not granted records.read" in answer["detail"]
    assert "reconnect" in answer["detail"]
    assert not Trigger.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"event": "record_deleted"}, "event"),
        ({"filters": {"title_contains": "x" * 201}}, "title_contains"),
        ({"process_id": 10**9}, "process_id"),
        ({"event": ""}, "event"),
    ],
)
def test_a_bad_trigger_is_refused_by_field(api, connection, process, data, field):
    values = {"event": "record_created", "process_id": process.pk, **data}
    answer = refused(api.post(f"{API}/connections/{connection.pk}/triggers", values), 422)
    assert field in answer["errors"], answer
    assert not Trigger.objects.exists()


def test_a_process_of_another_folder_is_refused_alike(api, tree, connection):
    other = processes.create_process(folder=tree["hr"], name="HR", job_queue=True).process
    answer = refused(
        api.post(
            f"{API}/connections/{connection.pk}/triggers",
            {"event": "record_created", "process_id": other.pk},
        ),
        422,
    )
    assert answer["errors"] == {"process_id": [f"Finance has no process {other.pk}."]}


def test_enable_disable_delete(api, trigger):
    off = api.post(f"{API}/triggers/{trigger.pk}/disable")
    assert off.status_code == 200 and off.json()["status"] == "disabled"
    assert off.json()["next_poll_at"] is None
    refused(api.post(f"{API}/triggers/{trigger.pk}/poll"), 409)
    on = api.post(f"{API}/triggers/{trigger.pk}/enable")
    assert on.status_code == 200 and on.json()["enabled"] and on.json()["next_poll_at"]
    assert api.delete(f"{API}/triggers/{trigger.pk}").status_code == 204
    assert not Trigger.objects.exists()
    refused(api.get(f"{API}/triggers/{trigger.pk}"), 404, "No such trigger.")


def test_poll_now_is_queued_after_commit(
    api, trigger, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(poll_now_task, "delay", lambda pk: sent.append(pk))
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"{API}/triggers/{trigger.pk}/poll")
    assert response.status_code == 202
    assert response.json() == {"trigger_id": trigger.pk, "detail": "A poll is queued."}
    assert sent == [] and len(callbacks) == 1
    callbacks[0]()
    assert sent == [trigger.pk]


def test_events_newest_first_with_their_jobs(api, trigger, add_job):
    first = add_job("1")
    second = add_job("2")
    page = api.get(f"{API}/triggers/{trigger.pk}/events", {"page_size": 1}).json()
    assert (page["count"], page["pages"]) == (2, 2)
    assert [item["provider_id"] for item in page["items"]] == ["2"]
    assert page["items"][0]["job"] == {
        "id": second.pk,
        "state": "pending",
        "delivery_state": "none",
    }
    page = api.get(f"{API}/triggers/{trigger.pk}/events", {"page_size": 1, "page": 2}).json()
    assert page["items"][0]["job"]["id"] == first.pk


def test_trigger_refusals(as_role, tree, connection, process, trigger):
    user = as_role("Automation User")  # no Triggers - View
    refused(
        user.get(f"{API}/connections/{connection.pk}/triggers"),
        403,
        "You do not have Triggers - View in this folder.",
    )
    refused(user.get(f"{API}/triggers/{trigger.pk}/events"), 403)
    viewer = as_role("Viewer")
    assert viewer.get(f"{API}/triggers/{trigger.pk}").status_code == 200
    for method, path in [
        ("post", f"/connections/{connection.pk}/triggers"),
        ("post", f"/triggers/{trigger.pk}/disable"),
        ("post", f"/triggers/{trigger.pk}/poll"),
        ("delete", f"/triggers/{trigger.pk}"),
    ]:
        answer = viewer.request(
            method, API + path, body={"event": "record_created", "process_id": process.pk}
        )
        refused(answer, 403, "You do not have Triggers - Manage in this folder.")
    scoped = as_role("Automation Developer", scope=tree["payables"])
    refused(scoped.get(f"{API}/triggers/{trigger.pk}"), 404, "No such trigger.")
    refused(scoped.delete(f"{API}/triggers/{trigger.pk}"), 404, "No such trigger.")
    assert Trigger.objects.get().enabled


# --- Jobs -------------------------------------------------------------------


def test_a_robot_pulls_claims_and_completes(as_role, process, add_job):
    robot = as_role("Automation User")
    job = add_job("1")
    add_job("2")
    pending = robot.get(f"{API}/processes/{process.pk}/jobs").json()
    assert pending["items"][0]["id"] == job.pk and pending["count"] == 2
    assert "lease_token" not in pending["items"][0]
    claimed = robot.post(f"{API}/processes/{process.pk}/jobs/claim", {"lease_seconds": 60})
    assert claimed.status_code == 200, claimed.content
    answer = claimed.json()
    assert answer["id"] == job.pk and answer["state"] == "claimed" and answer["lease_until"]
    assert answer["event"]["provider_id"] == "1"
    token = answer["lease_token"]
    # The token is the claimer's alone: no other answer shows it.
    for shown in (robot.get(f"{API}/processes/{process.pk}/jobs"),):
        assert token not in shown.content.decode()
    refused(
        robot.post(f"{API}/jobs/{job.pk}/complete", {"lease_token": "someone-else"}),
        409,
    )
    done = robot.post(f"{API}/jobs/{job.pk}/complete", {"lease_token": token, "result": "Booked"})
    assert done.status_code == 200 and done.json()["state"] == "completed"
    assert done.json()["result"] == "Booked" and token not in done.content.decode()
    refused(robot.post(f"{API}/jobs/{job.pk}/fail", {"lease_token": token, "reason": "x"}), 409)


def test_fail_with_a_reason_then_nothing_to_claim(as_role, process, add_job):
    robot = as_role("Automation User")
    job = add_job("1")
    token = robot.post(f"{API}/processes/{process.pk}/jobs/claim").json()["lease_token"]
    answer = refused(
        robot.post(f"{API}/jobs/{job.pk}/fail", {"lease_token": token, "reason": " "}), 422
    )
    assert "reason" in answer["errors"]
    failed = robot.post(
        f"{API}/jobs/{job.pk}/fail", {"lease_token": token, "reason": "The ledger is closed."}
    )
    assert failed.status_code == 200
    assert (failed.json()["state"], failed.json()["result"]) == ("failed", "The ledger is closed.")
    empty = robot.post(f"{API}/processes/{process.pk}/jobs/claim")
    assert empty.status_code == 204 and empty.content == b""


def test_a_lease_out_of_bounds_is_refused(as_role, process, add_job):
    add_job("1")
    robot = as_role("Automation User")
    answer = refused(
        robot.post(f"{API}/processes/{process.pk}/jobs/claim", {"lease_seconds": 5}), 422
    )
    assert "lease_seconds" in answer["errors"]
    assert Job.objects.get().state == "pending"


def test_a_process_without_a_job_queue(api, tree, connection):
    hooked = processes.create_process(folder=tree["finance"], name="Hook", webhook_url=HOOK)
    for call in (
        api.get(f"{API}/processes/{hooked.process.pk}/jobs"),
        api.post(f"{API}/processes/{hooked.process.pk}/jobs/claim"),
    ):
        assert "has no job queue" in refused(call, 409)["detail"]


def test_job_refusals(as_role, tree, process, add_job):
    job = add_job("1")
    viewer = as_role("Viewer")  # sees the queue, runs nothing
    assert viewer.get(f"{API}/processes/{process.pk}/jobs").status_code == 200
    refused(
        viewer.post(f"{API}/processes/{process.pk}/jobs/claim"),
        403,
        "You do not have Connections - Use in this folder.",
    )
    robot = as_role("Automation User")
    token = robot.post(f"{API}/processes/{process.pk}/jobs/claim").json()["lease_token"]
    refused(
        viewer.post(f"{API}/jobs/{job.pk}/complete", {"lease_token": token}),
        403,
        "You do not have Connections - Use in this folder.",
    )
    scoped = as_role("Automation Developer", scope=tree["payables"])
    refused(scoped.get(f"{API}/processes/{process.pk}/jobs"), 404, "No such process.")
    refused(
        scoped.post(f"{API}/jobs/{job.pk}/complete", {"lease_token": token}), 404, "No such job."
    )
    refused(
        robot.post(f"{API}/jobs/{job.pk + 1000}/complete", {"lease_token": token}),
        404,
        "No such job.",
    )
    job.refresh_from_db()
    assert job.state == "claimed" and job.lease_owner == token


def test_a_robot_extends_its_lease_while_working(as_role, process, add_job):
    robot = as_role("Automation User")
    job = add_job("1")
    claimed = robot.post(f"{API}/processes/{process.pk}/jobs/claim", {"lease_seconds": 30}).json()
    token, first_end = claimed["lease_token"], claimed["lease_until"]
    extended = robot.post(
        f"{API}/jobs/{job.pk}/extend", {"lease_token": token, "lease_seconds": 600}
    )
    assert extended.status_code == 200, extended.content
    answer = extended.json()
    assert answer["id"] == job.pk and answer["state"] == "claimed"
    assert "lease_token" not in answer and token not in extended.content.decode()
    job.refresh_from_db()
    assert job.lease_until > timezone.now() + timedelta(seconds=590)
    assert answer["lease_until"] != first_end
    shown = datetime.fromisoformat(answer["lease_until"].replace("Z", "+00:00"))
    assert abs(shown - job.lease_until) < timedelta(milliseconds=1)  # JSON: milliseconds
    # Nobody else may claim it meanwhile; the robot finishes with the same token.
    assert robot.post(f"{API}/processes/{process.pk}/jobs/claim").status_code == 204
    done = robot.post(f"{API}/jobs/{job.pk}/complete", {"lease_token": token})
    assert done.status_code == 200 and done.json()["state"] == "completed"
    late = refused(
        robot.post(f"{API}/jobs/{job.pk}/extend", {"lease_token": token, "lease_seconds": 60}),
        409,
    )
    assert answer_says(late, "completed already")


def answer_says(answer: dict, words: str) -> bool:
    return words in answer["detail"] and "not held with this lease token" in answer["detail"]


def test_extend_refused_once_another_robot_claimed(as_role, process, add_job):
    first, second = as_role("Automation User"), as_role("Automation Developer")
    job = add_job("1")
    old = first.post(f"{API}/processes/{process.pk}/jobs/claim", {"lease_seconds": 10}).json()
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    new = second.post(f"{API}/processes/{process.pk}/jobs/claim", {"lease_seconds": 60}).json()
    assert new["id"] == job.pk
    held = Job.objects.filter(pk=job.pk).values().get()
    for token in (old["lease_token"], "not-a-token-of-this-job"):
        answer = refused(
            first.post(f"{API}/jobs/{job.pk}/extend", {"lease_token": token, "lease_seconds": 600}),
            409,
        )
        assert answer_says(answer, "another robot claimed it"), answer
        assert new["lease_token"] not in str(answer)
    assert Job.objects.filter(pk=job.pk).values().get() == held
    assert held["lease_owner"] == new["lease_token"]


@pytest.mark.parametrize(
    "data",
    [{"lease_seconds": 9}, {"lease_seconds": 3601}, {"lease_seconds": -1}, {}],
    ids=["short", "long", "negative", "missing"],
)
def test_an_extension_out_of_bounds_is_refused(as_role, process, add_job, data):
    robot = as_role("Automation User")
    job = add_job("1")
    token = robot.post(f"{API}/processes/{process.pk}/jobs/claim").json()["lease_token"]
    held = Job.objects.filter(pk=job.pk).values().get()
    answer = refused(robot.post(f"{API}/jobs/{job.pk}/extend", {"lease_token": token, **data}), 422)
    assert list(answer["errors"]) == ["lease_seconds"]
    assert answer["detail"].startswith("lease_seconds: ")
    assert Job.objects.filter(pk=job.pk).values().get() == held


def test_extend_refusals_as_complete(as_role, tree, process, add_job):
    job = add_job("1")
    robot = as_role("Automation User")
    token = robot.post(f"{API}/processes/{process.pk}/jobs/claim").json()["lease_token"]
    held = Job.objects.filter(pk=job.pk).values().get()
    data = {"lease_token": token, "lease_seconds": 600}
    refused(
        as_role("Viewer").post(f"{API}/jobs/{job.pk}/extend", data),
        403,
        "You do not have Connections - Use in this folder.",
    )
    scoped = as_role("Automation Developer", scope=tree["payables"])
    refused(scoped.post(f"{API}/jobs/{job.pk}/extend", data), 404, "No such job.")
    refused(robot.post(f"{API}/jobs/{job.pk + 1000}/extend", data), 404, "No such job.")
    assert Job.objects.filter(pk=job.pk).values().get() == held


def test_retry_a_failed_delivery(
    api, as_role, process, add_job, monkeypatch, django_capture_on_commit_callbacks
):
    job = add_job("1")
    Job.objects.filter(pk=job.pk).update(
        webhook_id="msg_1", delivery_state=Job.DeliveryState.FAILED, delivery_attempts=8
    )
    refused(
        as_role("Automation User").post(f"{API}/jobs/{job.pk}/retry-delivery"),
        403,
        "You do not have Processes - Manage in this folder.",
    )
    sent = []
    monkeypatch.setattr(deliver_jobs_task, "delay", lambda *ids: sent.extend(ids))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API}/jobs/{job.pk}/retry-delivery")
    assert response.status_code == 200
    assert response.json()["delivery_state"] == "retrying"
    assert sent == [job.pk]
    job.refresh_from_db()
    assert job.delivery_due_at <= timezone.now() and job.webhook_id == "msg_1"
    # Retrying already: nothing to retry.
    refused(api.post(f"{API}/jobs/{job.pk}/retry-delivery"), 409)


def test_an_id_beyond_any_database_integer(api, tree, connection, process, trigger):
    big = 2**64
    made = api.post(
        f"{API}/folders/{tree['finance'].pk}/processes",
        {"name": "X", "job_queue": True, "requirements": {"sandbox": big}},
    )
    assert "sandbox" in refused(made, 422)["errors"]
    added = api.post(
        f"{API}/connections/{connection.pk}/triggers",
        {"event": "record_created", "process_id": big},
    )
    assert "process_id" in refused(added, 422)["errors"]
    refused(api.get(f"{API}/processes/{big}"), 404, "No such process.")
    refused(api.get(f"{API}/triggers/{big}/events"), 404, "No such trigger.")
    refused(api.post(f"{API}/jobs/{big}/fail", {"lease_token": "x", "reason": "y"}), 404)
