"""The API answers what its schema says, whatever it is sent: Schemathesis,
from /api/v1/openapi.json on a live server, with a tenant administrator's
key and an Automation Developer's, on a folder tree with FakeHub connections.
Valid and invalid data (a fixed seed, a few dozen examples per operation and
phase), then sequences of calls linked by the ids the answers carry (the
stateful phase). Checked: no server error; every status, content type and
body is one the schema declares for the operation.

Each call has a connection of its own: on a kept-alive one the live server
(Django's development server) takes about 100 ms more per answer.

On SQLite the live server's threads share the in-memory test database's one
connection; Schemathesis makes one call at a time and the test thread waits
for each answer, so nothing runs beside a request."""

from __future__ import annotations

import time
from collections import Counter

import hypothesis
import pytest
import requests
import schemathesis

from connections.models import Connection, ConnectionState, Job, TriggerEvent
from connections.triggers import configure, processes
from connections.triggers.tasks import deliver_jobs_task, poll_now_task
from portal import api_keys
from tests.connections.api.helpers import make_connection
from tests.connections.fake_provider import GOOD_API_KEY, GOOD_BASIC, GOOD_TOKEN
from tests.factories import assign

SEED = 20261206
EXAMPLES = 25  # per operation and phase (fuzzing: valid data, then invalid)
STATEFUL_SCENARIOS = 20
STATEFUL_STEPS = 8
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# Calls made, by role, phase and operation (printed at the end of the run).
calls: Counter = Counter()


def _config(live_server, raw_key: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": live_server.url,
            "headers": {"Authorization": f"Bearer {raw_key}"},
            "request-timeout": 30,
            "generation": {
                "mode": "all",  # valid data and invalid data
                "max-examples": EXAMPLES,
                "database": "none",  # no example database: every run the same
                "deterministic": True,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
            },
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
            },
        }
    )


def _triggers(tree) -> None:
    """A Sandbox connection with a trigger, processes (webhook and job queue,
    job queue only) and jobs: pending ones, and one whose delivery failed."""
    records = make_connection(tree["finance"], "Records", connector="sandbox")
    book = processes.create_process(
        folder=tree["finance"],
        name="Book",
        webhook_url="https://hooks.example.com/book",
        job_queue=True,
        requirements={"sandbox": records},
    ).process
    processes.create_process(folder=tree["payables"], name="Pulled", job_queue=True)
    trigger = configure.create_trigger(
        connection=records, event_key="record_created", filters={}, process=book
    )
    for number in range(3):
        event = TriggerEvent.objects.create(
            trigger=trigger, provider_id=str(number), payload={"id": number}
        )
        Job.objects.create(process=book, trigger=trigger, event=event)
    Job.objects.filter(event__provider_id="0").update(
        webhook_id="msg_0", delivery_state=Job.DeliveryState.FAILED
    )


@pytest.fixture
def seeded(tree, make_user, tenant_admin, fakehub, provider, settings, monkeypatch):
    """The folder tree, FakeHub connections in it (working ones, a disabled
    one, a folder's default, one never connected), a Sandbox connection with
    a trigger, processes and jobs, and the two callers. Polls and deliveries
    the calls ask for are not sent (no worker runs here)."""
    settings.PORTAL_API_RATE_LIMIT = "1000000/m"
    settings.PORTAL_API_REFUSED_RATE_LIMIT = "1000000/m"
    settings.PORTAL_SANDBOX_ENABLED = True
    monkeypatch.setattr(poll_now_task, "delay", lambda *args, **kwargs: None)
    monkeypatch.setattr(deliver_jobs_task, "delay", lambda *args, **kwargs: None)
    dev = make_user("dev")
    assign(dev, tree["finance"], "Automation Developer")
    make_connection(tree["finance"], "Robot", secret={"token": GOOD_TOKEN}, is_default=True)
    make_connection(tree["finance"], "Second", secret={"token": GOOD_TOKEN})
    make_connection(tree["finance"], "Off", secret={"token": GOOD_TOKEN}, is_enabled=False)
    make_connection(
        tree["payables"], "Keyed", auth_type="api_key", secret={"api_key": GOOD_API_KEY}
    )
    make_connection(
        tree["hr"],
        "Basic",
        auth_type="basic",
        fields={"email": GOOD_BASIC[0]},
        secret={"api_token": GOOD_BASIC[1]},
    )
    make_connection(tree["other"], "Never", state=ConnectionState.NOT_CONNECTED)
    _triggers(tree)
    assert Connection.objects.count() == 7
    return {
        "admin": api_keys.issue(owner=tenant_admin, name="fuzz", actor=tenant_admin).raw,
        "dev": api_keys.issue(owner=dev, name="fuzz", actor=dev).raw,
    }


@pytest.fixture(params=["admin", "dev"])
def api_schema(request, live_server, seeded):
    role = request.param
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/v1/openapi.json", config=_config(live_server, seeded[role])
    )
    schema.role = role
    # schemathesis.pytest 4.32 reads and writes the pytest 8 attribute for a
    # node's id (pytest 9 keeps it elsewhere); what it writes is only shown.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


def _phase(case) -> str:
    meta = case._meta  # which phase made the case: examples, coverage, fuzzing
    return meta.phase.name.value if meta is not None else "?"


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    started = time.monotonic()
    yield
    by_phase: Counter = Counter()
    for (role, phase, _), count in calls.items():
        by_phase[(role, phase)] += count
    operations = {operation for _, _, operation in calls}
    lines = [f"{role} {phase}: {count}" for (role, phase), count in sorted(by_phase.items())]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            f"\nSchemathesis: {sum(calls.values())} calls on {len(operations)} operations in "
            f"{time.monotonic() - started:.0f} s ({'; '.join(lines)})"
        )


@schema.parametrize()
def test_every_operation_answers_as_its_schema_says(case, api_schema):
    calls[(api_schema.role, _phase(case), case.operation.label)] += 1
    with requests.Session() as session:
        case.call_and_validate(session=session)


def test_sequences_of_calls_answer_as_the_schema_says(api_schema):
    role = api_schema.role

    class Workflow(api_schema.as_state_machine()):
        def call(self, case, **kwargs):
            with requests.Session() as session:
                return case.call(session=session, **kwargs)

        def after_call(self, response, case):
            super().after_call(response, case)
            calls[(role, "stateful", case.operation.label)] += 1

    started = time.monotonic()
    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    made = sum(
        count for (who, phase, _), count in calls.items() if (who, phase) == (role, "stateful")
    )
    assert made >= STATEFUL_SCENARIOS, f"{made} calls in {time.monotonic() - started:.0f} s"
