"""A worker killed in the middle of a deployment leaves nothing half: a real
``celery -A portal worker`` on Redis runs the deployment task and is
SIGKILLed at an engine checkpoint (``tests.solutions.deploy_kill_points``);
a fresh worker is started and the sweep runs as beat would run it, once the
dead worker's lease on the deployment has run out.

1. Killed after a step of a deployment: the deployment resumes after the
   last step done and ends whole (each object made once).
2. Killed while rolling back a failed deployment: the rollback goes on and
   leaves nothing behind.

Needs PostgreSQL and Redis (CI); skipped without REDIS_URL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connections.models import Connection, Process, Trigger
from portal.models import Folder
from solutions.deploy import actions
from solutions.models import Deployment, DeploymentStep
from tests.celery_worker import Broker, Worker
from tests.factories import assign
from tests.solutions.deploy_helpers import picture, settings_doc, version_of

RUN = "solutions.deploy.tasks.run_deployment"
SWEEP = "solutions.deploy.tasks.deployment_sweep"
LEASE_SECONDS = 3

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def deploy_worker(name: str, folder: Path, broker: Broker, **env: str) -> Worker:
    """A worker with the deployment kill points and a short deployment lease."""
    return Worker(
        name,
        folder,
        broker,
        include="tests.solutions.deploy_kill_points",
        PORTAL_DEPLOY_LEASE_SECONDS=str(LEASE_SECONDS),
        **env,
    )


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


@pytest.fixture
def deployment(make_user, tree, monkeypatch, settings):
    """Planned, its steps recorded; its task left for the test to send."""
    settings.PORTAL_SANDBOX_ENABLED = True
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    monkeypatch.setattr(actions.run_deployment_task, "delay_on_commit", lambda *a: None)
    before = picture()
    made = actions.deploy(
        version=version_of(), settings=settings_doc("Shared/Deployed"), actor=user
    )
    actions_by_position = dict(made.steps.values_list("position", "action"))
    assert list(actions_by_position.values()) == [
        "begin", "create_folder", "create_connection", "create_process", "create_trigger",
    ]  # fmt: skip
    made.before = before
    return made


def _until_finished(deployment_id: int, worker: Worker, timeout: float = 40) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Deployment.objects.get(pk=deployment_id)
        if row.state in (Deployment.State.SUCCEEDED, Deployment.State.FAILED):
            return row
        time.sleep(0.2)
    raise AssertionError(f"the deployment did not finish\n{worker.tail()}")


def _restart_and_sweep(broker, workers, tmp_path) -> Worker:
    """A fresh worker; once the dead one's lease has run out, the sweep as beat sends it."""
    fresh = deploy_worker("second", tmp_path, broker)
    workers.append(fresh)
    fresh.wait_for("ready", 30)
    time.sleep(LEASE_SECONDS + 0.5)
    broker.app.send_task(SWEEP, queue=broker.queue)
    return fresh


def test_killed_after_a_step_the_deployment_resumes_and_ends_whole(
    deployment, broker, workers, tmp_path
):
    first = deploy_worker("first", tmp_path, broker, PORTAL_TEST_DEPLOY_STOP_AT="after_step:3")
    workers.append(first)
    first.wait_for("ready", 30)
    broker.app.send_task(RUN, args=[deployment.pk], queue=broker.queue)
    first.wait_for("stopped", 30)
    first.kill()
    # Half way, as the kill left it: a folder and a connection, no process yet.
    row = Deployment.objects.get(pk=deployment.pk)
    assert row.state == Deployment.State.RUNNING
    states = list(row.steps.order_by("position").values_list("state", flat=True))
    assert states == ["done", "done", "done", "pending", "pending"]
    assert Connection.objects.filter(folder__name="Deployed").count() == 1
    assert not Process.objects.exists()

    second = _restart_and_sweep(broker, workers, tmp_path)
    row = _until_finished(deployment.pk, second)
    assert row.state == Deployment.State.SUCCEEDED, row.error
    folder = Folder.objects.get(name="Deployed")
    assert Connection.objects.filter(folder=folder).count() == 1  # made once
    assert Process.objects.filter(folder=folder).count() == 1
    trigger = Trigger.objects.get()
    assert trigger.connection.folder == folder and trigger.process.folder == folder
    assert set(row.steps.values_list("state", flat=True)) == {DeploymentStep.State.DONE}
    assert {i.component for i in row.items.all()} == {"connection-1", "process-1", "trigger-1"}


def test_killed_while_rolling_back_the_rollback_goes_on_and_leaves_nothing(
    deployment, broker, workers, tmp_path
):
    first = deploy_worker(
        "first",
        tmp_path,
        broker,
        PORTAL_TEST_DEPLOY_FAIL_AT="5",  # the trigger's step fails
        PORTAL_TEST_DEPLOY_STOP_AT="after_undo:4",  # the process undone, not the connection
    )
    workers.append(first)
    first.wait_for("ready", 30)
    broker.app.send_task(RUN, args=[deployment.pk], queue=broker.queue)
    first.wait_for("stopped", 30)
    first.kill()
    row = Deployment.objects.get(pk=deployment.pk)
    assert row.state == Deployment.State.ROLLING_BACK
    assert Connection.objects.filter(folder__name="Deployed").exists()  # half undone

    second = _restart_and_sweep(broker, workers, tmp_path)
    row = _until_finished(deployment.pk, second)
    assert row.state == Deployment.State.FAILED
    assert "injected failure" in row.error
    assert picture() == deployment.before  # nothing left behind
