"""Nothing lost and nothing twice when a worker dies between a poll and its
webhooks: a real ``celery -A portal worker`` on Redis (visibility timeout of
a few seconds) polls the Sandbox records API over HTTP and delivers to a
receiver that verifies each Standard Webhooks signature; the worker is
SIGKILLed, a fresh one is started, and the sweeps run as beat would run them.

1. Killed after the poll's page committed (events and jobs in the outbox)
   and before any webhook went out: every record still makes exactly one
   job, and each job is delivered.
2. Killed in the middle of a delivery (the receiver has the request, the
   worker dies before recording the answer): that job is delivered again
   with the same ``webhook-id``, and there is still one job per record.

Each test reports the raw number of delivery attempts the receiver saw
(printed to the terminal whatever the capture, and as the test's
``delivery_attempts`` property in JUnit XML). The worker is steered by
``tests.connections.triggers.kill_points``. Needs PostgreSQL and Redis (CI).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from connections.models import Delivery, Job, SandboxRecord, Trigger, TriggerEvent
from connections.triggers.polling import poll_trigger
from tests.celery_worker import VISIBILITY_TIMEOUT, Broker, Worker
from tests.connections.triggers.receiver import Receiver

POLL_SWEEP = "connections.triggers.tasks.poll_sweep"
DELIVERY_SWEEP = "connections.triggers.tasks.delivery_sweep"
POLL = "connections.triggers.tasks.poll_triggers"
DELIVER = "connections.triggers.tasks.deliver_jobs"
RECORDS = 5

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


def trigger_worker(name: str, folder: Path, base_url: str, broker: Broker, **env: str) -> Worker:
    """A worker with the trigger kill points, the live server as the Sandbox."""
    return Worker(
        name,
        folder,
        broker,
        include="tests.connections.triggers.kill_points",
        PORTAL_BASE_URL=base_url,
        PORTAL_EGRESS_ALLOWED_NETWORKS="127.0.0.0/8,::1/128",
        **env,
    )


class HoldingReceiver(Receiver):
    """The receiver, which can keep its answer to the first delivery back
    (it has verified and kept the request) until the test lets it go."""

    def __init__(self) -> None:
        self.hold_first = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._status = 204
        super().__init__()

    @property
    def status(self) -> int:  # read by the handler after it kept the request
        if self.hold_first and not self.arrived.is_set():
            self.arrived.set()
            self.release.wait(30)
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = value


@pytest.fixture
def receiver():
    started = HoldingReceiver().start()
    yield started
    started.release.set()
    started.stop()


def _wait(condition, timeout: float, what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}\n{worker.tail() if worker else ''}")


def _delivered() -> int:
    return Job.objects.filter(delivery_state=Job.DeliveryState.DELIVERED).count()


def _due_trigger_with_records(make_trigger, add_record) -> tuple[Trigger, list[str]]:
    """A trigger whose first poll is behind it, RECORDS new records made
    through the Sandbox API, and the trigger due."""
    trigger = make_trigger()
    assert poll_trigger(trigger.pk).status == "ok"  # from now on
    ids = [str(add_record(f"Invoice {n}")["id"]) for n in range(1, RECORDS + 1)]
    Trigger.objects.filter(pk=trigger.pk).update(next_poll_at=timezone.now())
    return trigger, ids


def _wait_out_visibility(stopped_at: float) -> None:
    """The killed worker's message comes back to the next worker that starts
    polling once the visibility timeout has passed since it was taken."""
    time.sleep(max(0.0, stopped_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))


def _assert_one_job_per_record_all_delivered(trigger, record_ids, receiver) -> Counter:
    events = TriggerEvent.objects.filter(trigger=trigger)
    assert sorted(events.values_list("provider_id", flat=True)) == sorted(record_ids)
    jobs = list(Job.objects.filter(trigger=trigger).select_related("event"))
    assert sorted(job.event.provider_id for job in jobs) == sorted(record_ids)  # one each
    assert Job.objects.count() == len(record_ids)
    assert all(job.delivery_state == Job.DeliveryState.DELIVERED for job in jobs)
    assert all(job.state == Job.State.COMPLETED for job in jobs)
    seen = Counter(hook.webhook_id for hook in receiver.received)
    assert set(seen) == {job.webhook_id for job in jobs}  # none missing, none foreign
    assert all(hook.verified for hook in receiver.received)
    # A duplicate is only ever the same job's webhook-id again, with the same event.
    by_id: dict[str, set] = {}
    for hook in receiver.received:
        by_id.setdefault(hook.webhook_id, set()).add(hook.body["data"]["event"]["provider_id"])
    assert all(len(ids) == 1 for ids in by_id.values())
    assert Delivery.objects.filter(state=Delivery.State.DELIVERED).count() == len(record_ids)
    return seen


def _report(request, capsys, name: str, seen: Counter, jobs: int, note: str = "") -> None:
    attempts = sum(seen.values())
    repeated = {key: count for key, count in seen.items() if count > 1}
    line = (
        f"[{name}] delivery attempts seen by the receiver: {attempts} for {jobs} jobs "
        f"({len(seen)} distinct webhook-ids; repeated: {sorted(repeated.values()) or 'none'})"
        + (f"; {note}" if note else "")
    )
    request.node.user_properties.append(("delivery_attempts", attempts))
    request.node.user_properties.append(("distinct_webhook_ids", len(seen)))
    print(line)
    with capsys.disabled():
        sys.stdout.write(f"\n{line}\n")


def test_killed_after_the_page_committed_before_delivery_loses_nothing(
    request, capsys, sandbox_api, make_trigger, add_record, receiver, broker, tmp_path
):
    trigger, record_ids = _due_trigger_with_records(make_trigger, add_record)
    first = trigger_worker(
        "first", tmp_path, sandbox_api.url, broker, PORTAL_TEST_TRIGGER_STOP_AT="before_delivery"
    )
    second = None
    try:
        first.wait_for("ready", timeout=30)
        broker.send(POLL_SWEEP)  # beat's poll sweep
        stopped = first.wait_for("stopped", timeout=30)
        # Stopped after the page's commit, before any webhook went out.
        assert stopped["name"] == "before_delivery"
        assert TriggerEvent.objects.filter(trigger=trigger).count() == RECORDS
        pending = Job.objects.filter(trigger=trigger)
        assert pending.count() == RECORDS
        assert all(job.delivery_attempts == 0 for job in pending)
        assert not Delivery.objects.exists() and receiver.received == []
        first.kill()
        # The task the worker was in (the poll, or the delivery) was never acknowledged.
        assert len(broker.unacked()) == 1, first.tail()

        _wait_out_visibility(stopped["at"])
        second = trigger_worker("second", tmp_path, sandbox_api.url, broker)
        second.wait_for("ready", timeout=30)
        # It takes back the dead worker's message and runs it.
        taken_back = POLL if stopped["via"] == "publish" else DELIVER
        second.wait_for("task_done", timeout=20, task=taken_back)
        # Beat: the poll sweep and the delivery sweep (the outbox relay).
        broker.send(POLL_SWEEP)
        broker.send(DELIVERY_SWEEP)
        _wait(lambda: _delivered() == RECORDS, 20, "every job is delivered", second)
        # Another round of beat finds nothing more to do.
        sweeps = second.done(DELIVERY_SWEEP)
        broker.send(POLL_SWEEP)
        broker.send(DELIVERY_SWEEP)
        second.wait_for("task_done", timeout=20, task=DELIVERY_SWEEP, count=sweeps + 1)
        assert broker.drained(), second.tail()
    finally:
        first.kill()
        if second is not None:
            second.kill()

    seen = _assert_one_job_per_record_all_delivered(trigger, record_ids, receiver)
    note = f"stopped at the {stopped['via']} of the deliveries"
    _report(request, capsys, "killed before delivery", seen, RECORDS, note)
    # Nothing was sent before the kill, so nothing needed sending twice.
    assert sum(seen.values()) == RECORDS
    assert SandboxRecord.objects.count() == RECORDS


def test_killed_during_a_delivery_resends_the_same_webhook_id(
    request, capsys, sandbox_api, make_trigger, add_record, receiver, broker, tmp_path
):
    trigger, record_ids = _due_trigger_with_records(make_trigger, add_record)
    receiver.hold_first = True
    first = trigger_worker("first", tmp_path, sandbox_api.url, broker)
    second = None
    try:
        first.wait_for("ready", timeout=30)
        broker.send(POLL_SWEEP)
        assert receiver.arrived.wait(30), first.tail()
        # The receiver has the first webhook; the worker waits for its answer.
        interrupted = receiver.received[0].webhook_id
        job = Job.objects.get(webhook_id=interrupted)
        assert job.delivery_attempts == 1
        assert list(Delivery.objects.filter(job=job).values_list("state", flat=True)) == [
            Delivery.State.SENDING
        ]
        killed_at = time.time()
        first.kill()
        receiver.release.set()  # its answer goes nowhere
        assert Job.objects.filter(trigger=trigger).count() == RECORDS
        assert len(broker.unacked()) == 1, first.tail()

        _wait_out_visibility(killed_at)
        second = trigger_worker("second", tmp_path, sandbox_api.url, broker)
        second.wait_for("ready", timeout=30)
        # The dead worker's delivery task comes back: the other jobs go out;
        # the interrupted one waits for its attempt's lease to end.
        second.wait_for("task_done", timeout=20, task=DELIVER)
        broker.send(DELIVERY_SWEEP)
        second.wait_for("task_done", timeout=20, task=DELIVERY_SWEEP)
        _wait(lambda: _delivered() == RECORDS - 1, 20, "the other jobs are delivered", second)
        job.refresh_from_db()
        assert job.delivery_state != Job.DeliveryState.DELIVERED
        assert job.delivery_due_at > timezone.now()  # the dead attempt's lease
        # The lease runs out (moved to now rather than waited for).
        Job.objects.filter(pk=job.pk).update(delivery_due_at=timezone.now() - timedelta(seconds=1))
        broker.send(POLL_SWEEP)
        broker.send(DELIVERY_SWEEP)
        _wait(lambda: _delivered() == RECORDS, 20, "the interrupted job is delivered", second)
        sweeps = second.done(DELIVERY_SWEEP)
        broker.send(DELIVERY_SWEEP)
        second.wait_for("task_done", timeout=20, task=DELIVERY_SWEEP, count=sweeps + 1)
        assert broker.drained(), second.tail()
    finally:
        first.kill()
        if second is not None:
            second.kill()

    seen = _assert_one_job_per_record_all_delivered(trigger, record_ids, receiver)
    _report(request, capsys, "killed during delivery", seen, RECORDS)
    # The interrupted webhook came twice with the same id; the others once.
    assert seen[interrupted] == 2
    assert sorted(seen.values()) == [1] * (RECORDS - 1) + [2]
    attempts = Delivery.objects.filter(job=job).order_by("attempt")
    assert [(d.attempt, d.state, d.webhook_id) for d in attempts] == [
        (1, Delivery.State.FAILED, interrupted),
        (2, Delivery.State.DELIVERED, interrupted),
    ]
