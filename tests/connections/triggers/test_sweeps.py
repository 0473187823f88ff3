"""The poll and delivery sweeps: due work by one indexed query, fanned out in
batches; their queries do not grow with the triggers that are not due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection as db
from django.utils import timezone

from connections import engine
from connections.models import Job, Trigger, TriggerEvent
from connections.triggers import tasks
from connections.triggers.processes import create_process
from tests.factories import ConnectionFactory, FolderFactory

pytestmark = pytest.mark.django_db

NOT_DUE = 10_000


@pytest.fixture
def sent(monkeypatch):
    """What the sweeps enqueue (arguments per task), instead of a broker."""
    calls = []
    for task in (tasks.poll_triggers_task, tasks.deliver_jobs_task):
        monkeypatch.setattr(task, "delay", lambda *ids, _task=task: calls.append((_task, ids)))
    return calls


@pytest.fixture
def triggers():
    folder = FolderFactory()
    connection = ConnectionFactory(folder=folder, sandbox=True)
    process = create_process(folder=folder, name="P", webhook_url="https://hooks.example.com/p")

    def make(count: int, *, due: bool) -> list[Trigger]:
        now = timezone.now()
        when = now - timedelta(seconds=5) if due else now + timedelta(minutes=5)
        return Trigger.objects.bulk_create(
            Trigger(
                connection=connection,
                event_key="record_created",
                process=process.process,
                next_poll_at=when,
            )
            for _ in range(count)
        )

    return make


def test_the_poll_sweep_queries_do_not_grow_with_triggers_not_due(
    triggers, sent, django_assert_num_queries, django_capture_on_commit_callbacks
):
    due = triggers(3, due=True)
    sweep = django_capture_on_commit_callbacks(execute=True)
    # The due triggers, a savepoint, their queued mark, its release.
    with django_assert_num_queries(4) as few, sweep:
        assert tasks.poll_sweep() == 3
    triggers(NOT_DUE, due=False)
    Trigger.objects.filter(pk__in=[t.pk for t in due]).update(poll_queued_until=None)
    sweep = django_capture_on_commit_callbacks(execute=True)
    with django_assert_num_queries(len(few.captured_queries)), sweep:
        assert tasks.poll_sweep() == 3
    # Fewer than 2 * TASKS_AT_LEAST due: one poll per task.
    assert [ids for _, ids in sent] == [(t.pk,) for t in due] * 2
    # Queued: the next sweep does not send them again.
    with django_assert_num_queries(1):
        assert tasks.poll_sweep() == 0
    if db.vendor == "postgresql":
        with db.cursor() as cursor:  # the statistics autovacuum would gather by now
            cursor.execute("ANALYZE connections_trigger")
    assert "trigger_poll_due" in tasks.due_for_poll().explain()


def test_the_poll_sweep_sends_several_per_task_when_many_are_due(
    triggers, sent, django_capture_on_commit_callbacks
):
    triggers(300, due=True)
    triggers(10, due=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.poll_sweep() == 300
    sizes = [len(ids) for _, ids in sent]
    assert sum(sizes) == 300 and max(sizes) == engine.per_task(300, tasks.POLLS_PER_TASK) == 6


def test_disabled_triggers_are_never_due(triggers, sent):
    [trigger] = triggers(1, due=True)
    Trigger.objects.filter(pk=trigger.pk).update(enabled=False)
    assert tasks.poll_sweep() == 0


def test_the_delivery_sweep_sends_due_deliveries_once(
    triggers, sent, django_assert_num_queries, django_capture_on_commit_callbacks
):
    [trigger] = triggers(1, due=False)
    now = timezone.now()
    events = TriggerEvent.objects.bulk_create(
        TriggerEvent(trigger=trigger, provider_id=str(n), payload={}) for n in range(NOT_DUE + 2)
    )
    jobs = Job.objects.bulk_create(
        Job(
            process=trigger.process,
            trigger=trigger,
            event=event,
            webhook_id=f"msg_{n}",
            delivery_state=Job.DeliveryState.RETRYING,
            delivery_due_at=now - timedelta(seconds=1) if n < 2 else now + timedelta(hours=1),
        )
        for n, event in enumerate(events)
    )
    with django_assert_num_queries(4), django_capture_on_commit_callbacks(execute=True):
        assert tasks.delivery_sweep() == 2
    assert sorted(ids for _, ids in sent) == [(jobs[0].pk,), (jobs[1].pk,)]
    assert tasks.delivery_sweep() == 0
