"""Replay of one event (connections.triggers.replay): a new job of the
trigger's process, delivered like any job (a new webhook-id, verified by the
receiver with the ``standardwebhooks`` library; the job queue), pointing at
the event's first job; the polls still make one job per event."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.test import TestCase

from connections.models import Job, TriggerEvent
from connections.triggers import configure, jobs, processes, replay, tasks
from connections.triggers.delivery import deliver_job, payload
from portal.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager():
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def test_a_replay_is_a_new_job_delivered_with_a_new_webhook_id(
    eager, make_trigger, add_record, receiver
):
    trigger = make_trigger()
    tasks.poll_now_task.delay(trigger.pk)  # starts from now
    add_record("Invoice 9")
    tasks.poll_now_task.delay(trigger.pk)
    first = Job.objects.get()
    assert first.delivery_state == Job.DeliveryState.DELIVERED

    sent: list[int] = []
    replayed = replay.replay_event(first.event, on_new_job=sent.extend)
    assert sent == [replayed.pk]  # after the commit (no transaction here: at once)
    assert replayed.replay_of_id == first.pk
    assert replayed.event_id == first.event_id and replayed.process_id == first.process_id
    assert replayed.webhook_id.startswith("msg_") and replayed.webhook_id != first.webhook_id
    assert replayed.delivery_state == Job.DeliveryState.PENDING

    assert deliver_job(replayed.pk).status == "delivered"
    replayed.refresh_from_db()
    assert replayed.state == Job.State.COMPLETED
    hooks = receiver.received
    assert [hook.webhook_id for hook in hooks] == [first.webhook_id, replayed.webhook_id]
    assert all(hook.verified for hook in hooks)
    assert hooks[1].body["data"]["replay_of"] == first.pk
    assert hooks[0].body["data"]["replay_of"] is None
    assert payload(replayed)["data"]["event"]["summary"] == "Invoice 9"

    # A replay of a replay points at the event's first job too.
    again = replay.replay_event(first.event)
    assert again.replay_of_id == first.pk
    # Polling again (a task run twice) makes no job for the same event.
    tasks.poll_now_task.delay(trigger.pk)
    assert Job.objects.filter(replay_of__isnull=True).count() == 1
    assert Job.objects.count() == 3


def test_the_polls_one_job_per_event_still_holds(make_trigger):
    trigger = make_trigger()
    event = TriggerEvent.objects.create(trigger=trigger, provider_id="7", summary="Invoice 7")
    first = Job.objects.create(process=trigger.process, trigger=trigger, event=event)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(process=trigger.process, trigger=trigger, event=event)
    Job.objects.create(process=trigger.process, trigger=trigger, event=event, replay_of=first)
    assert Job.objects.filter(event=event).count() == 2


def test_replay_waits_for_the_commit_to_enqueue(make_trigger):
    trigger = make_trigger()
    event = TriggerEvent.objects.create(trigger=trigger, provider_id="8", summary="Invoice 8")
    Job.objects.create(process=trigger.process, trigger=trigger, event=event)
    sent: list[int] = []
    with TestCase.captureOnCommitCallbacks(execute=False) as callbacks, transaction.atomic():
        made = replay.replay_event(event, on_new_job=sent.extend)
        assert sent == []
    for callback in callbacks:
        callback()
    assert sent == [made.pk]


def test_a_job_queue_process_gets_the_replay_in_its_queue(folder, connection):
    process = processes.create_process(folder=folder, name="Queue only", job_queue=True).process
    trigger = configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )
    event = TriggerEvent.objects.create(trigger=trigger, provider_id="1", summary="Order 1")
    first = Job.objects.create(process=process, trigger=trigger, event=event)
    jobs.complete_job(
        first, lease_token=jobs.claim_job(process).lease_token, result="Booked"
    )  # the first run is done
    sent: list[int] = []
    made = replay.replay_event(event, on_new_job=sent.extend)
    assert sent == []  # no webhook: nothing to deliver
    assert made.webhook_id == "" and made.delivery_state == Job.DeliveryState.NONE
    claimed = jobs.claim_job(process)
    assert claimed is not None and claimed.job.pk == made.pk
    assert claimed.job.replay_of_id == first.pk
