"""Jobs delivered to a receiver served in the test, which verifies each
Standard Webhooks signature with the ``standardwebhooks`` library: one signed
delivery per job, the same webhook-id on every attempt, retries with backoff,
then failed, then Retry; never a second success."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Delivery, Job
from connections.triggers import delivery, tasks
from connections.triggers.delivery import deliver_job, retry_delivery
from connections.triggers.polling import poll_trigger
from portal.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager():
    """Tasks run where they are sent (the flow, not a worker's behaviour, is under test)."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def make_due(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(delivery_due_at=timezone.now())


def test_records_created_are_one_event_one_job_one_signed_delivery_each(
    eager, make_trigger, add_record, receiver, connection
):
    trigger = make_trigger()
    tasks.poll_now_task.delay(trigger.pk)  # starts from now
    for title in ("Invoice 1", "Invoice 2", "Invoice 3"):
        add_record(title)
    tasks.poll_now_task.delay(trigger.pk)

    jobs = list(Job.objects.select_related("event").order_by("pk"))
    assert [job.event.summary for job in jobs] == ["Invoice 1", "Invoice 2", "Invoice 3"]
    assert all(job.delivery_state == Job.DeliveryState.DELIVERED for job in jobs)
    assert all(job.state == Job.State.COMPLETED for job in jobs)  # no job queue: delivered is done
    assert len(receiver.received) == 3
    assert all(hook.verified for hook in receiver.received)
    assert sorted(hook.webhook_id for hook in receiver.received) == sorted(
        job.webhook_id for job in jobs
    )
    body = receiver.received[0].body
    assert body["type"] == "trigger.event"
    data = body["data"]
    assert data["connection"] == {"id": connection.pk, "name": "Records", "connector": "sandbox"}
    assert data["trigger"] == {"id": trigger.pk, "event": "record_created"}
    assert data["event"]["summary"] == "Invoice 1"
    assert data["event"]["payload"]["title"] == "Invoice 1"

    # Tasks delivered again (a worker killed before acknowledging them), and
    # the sweep: no second job, no second delivery.
    tasks.poll_now_task.delay(trigger.pk)
    tasks.deliver_jobs_task.delay(*[job.pk for job in jobs])
    assert tasks.delivery_sweep() == 0
    assert Job.objects.count() == 3
    assert len(receiver.received) == 3
    assert Delivery.objects.filter(state=Delivery.State.DELIVERED).count() == 3


def test_a_redelivered_delivery_task_sends_nothing_twice(make_trigger, add_record, receiver):
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    add_record("Once")
    poll_trigger(trigger.pk)
    job = Job.objects.get()
    assert deliver_job(job.pk).status == "delivered"
    assert deliver_job(job.pk).status == "skipped"
    make_due(job)  # even if it were due again, it is delivered
    assert deliver_job(job.pk).status == "skipped"
    assert len(receiver.received) == 1
    assert Delivery.objects.get().attempt == 1


def test_receiver_down_retries_with_backoff_then_fails_then_retry_delivers(
    make_trigger, add_record, receiver, monkeypatch
):
    monkeypatch.setattr(delivery, "ATTEMPTS", 4)
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    add_record("Invoice 9")
    poll_trigger(trigger.pk)
    job = Job.objects.get()
    receiver.stop()

    waits = []
    for attempt in (1, 2, 3):
        before = timezone.now()
        outcome = deliver_job(job.pk)
        assert (outcome.status, outcome.attempt) == ("retrying", attempt)
        assert "refused" in outcome.error
        job.refresh_from_db()
        assert job.delivery_state == Job.DeliveryState.RETRYING
        assert job.delivery_due_at == outcome.next_at
        waits.append(outcome.next_at - before)
        # Not before its time: a task or a sweep now sends nothing.
        assert deliver_job(job.pk).status == "skipped"
        assert tasks.due_for_delivery().count() == 0
        make_due(job)
    # Exponential, with jitter: each wait about twice the one before.
    first = timedelta(seconds=delivery.FIRST_RETRY_SECONDS)
    assert first <= waits[0] <= first * 1.25
    assert waits[0] * 1.5 < waits[1] and waits[1] * 1.5 < waits[2]

    outcome = deliver_job(job.pk)
    assert (outcome.status, outcome.attempt) == ("failed", 4)
    job.refresh_from_db()
    assert job.delivery_state == Job.DeliveryState.FAILED and job.delivery_due_at is None
    assert job.state == Job.State.FAILED and "after 4 attempts" in job.result
    attempts = list(job.deliveries.order_by("attempt"))
    assert [a.state for a in attempts] == [Delivery.State.FAILED] * 4
    assert {a.webhook_id for a in attempts} == {job.webhook_id}
    assert attempts[0].next_attempt_at is not None and attempts[-1].next_attempt_at is None
    assert deliver_job(job.pk).status == "skipped"

    receiver.start()  # back up, on the same port
    assert retry_delivery(job)
    assert not retry_delivery(job)  # a second click changes nothing
    assert job.state == Job.State.PENDING
    assert tasks.due_for_delivery().count() == 1
    outcome = deliver_job(job.pk)
    assert (outcome.status, outcome.attempt) == ("delivered", 5)
    [hook] = receiver.received
    assert hook.verified and hook.webhook_id == job.webhook_id
    job.refresh_from_db()
    assert job.state == Job.State.COMPLETED
    assert not retry_delivery(job)  # delivered: nothing to retry


def test_an_attempt_whose_worker_died_is_made_again_with_the_same_id(
    make_trigger, add_record, receiver
):
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    add_record("Invoice 10")
    poll_trigger(trigger.pk)
    job = Job.objects.get()
    # The worker claimed attempt 1 and died before recording an answer.
    claimed = delivery._claim(job.pk)
    assert claimed is not None
    assert deliver_job(job.pk).status == "skipped"  # its lease holds
    make_due(job)  # the lease ran out
    assert deliver_job(job.pk).status == "delivered"
    first, second = job.deliveries.order_by("attempt")
    assert first.state == Delivery.State.FAILED and "worker stopped" in first.error
    assert second.state == Delivery.State.DELIVERED
    assert [hook.webhook_id for hook in receiver.received] == [job.webhook_id]


def test_a_process_with_a_job_queue_keeps_its_jobs_for_robots(
    make_trigger, add_record, receiver, process
):
    process.job_queue = True
    process.save()
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    add_record("For a robot")
    poll_trigger(trigger.pk)
    job = Job.objects.get()
    assert deliver_job(job.pk).status == "delivered"
    job.refresh_from_db()
    assert job.state == Job.State.PENDING  # a robot claims and completes it
