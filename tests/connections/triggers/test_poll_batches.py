"""Polls a batch at a time (connections/engine.py): the statements of a
batch do not grow with its triggers when their polls find nothing; each
trigger's result and history line are its own; a trigger disabled while its
poll ran stays unscheduled. Over real HTTP to the Sandbox API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import engine
from connections.models import Trigger, TriggerPoll
from connections.triggers import polling
from connections.triggers.polling import poll_triggers

pytestmark = pytest.mark.django_db(transaction=True)


def poll(ids, **options):
    with engine.Batch() as batch:
        return poll_triggers(ids, batch, **options)


def test_a_batch_costs_the_same_statements_whatever_its_size(make_trigger):
    small = [make_trigger().pk for _ in range(2)]
    large = [make_trigger().pk for _ in range(7)]
    poll(small + large)  # the first polls set the cursors
    with CaptureQueriesContext(db) as two:
        outcomes = poll(small)
    with CaptureQueriesContext(db) as seven:
        poll(large)
    assert {o.status for o in outcomes.values()} == {"ok"}
    assert len(two) == len(seven)
    assert TriggerPoll.objects.filter(trigger_id__in=large).count() == 7 * 2


def test_each_trigger_gets_its_own_result(make_trigger, add_record):
    quiet, fired = make_trigger(), make_trigger(include_existing=True)
    add_record("Already there")
    outcomes = poll([quiet.pk, fired.pk, 424242])
    assert outcomes[quiet.pk].fired == 0 and outcomes[fired.pk].fired == 1
    assert outcomes[424242].status == "gone"
    lines = {line.trigger_id: line for line in TriggerPoll.objects.all()}
    assert (lines[quiet.pk].items, lines[fired.pk].items) == (0, 1)
    assert lines[fired.pk].pages == 1 and lines[fired.pk].outcome == "ok"


def test_only_the_due_ones_are_polled_with_if_due(make_trigger):
    due, later = make_trigger(), make_trigger()
    Trigger.objects.filter(pk=later.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    Trigger.objects.filter(pk=due.pk).update(next_poll_at=timezone.now())
    Trigger.objects.update(poll_queued_until=timezone.now() + timedelta(minutes=5))
    outcomes = poll([due.pk, later.pk], if_due=True)
    assert (outcomes[due.pk].status, outcomes[later.pk].status) == ("ok", "not_due")
    assert not Trigger.objects.filter(poll_queued_until__isnull=False).exists()


def test_a_trigger_disabled_during_its_poll_stays_unscheduled(make_trigger, monkeypatch):
    trigger = make_trigger()
    original = polling._poll

    def disabled_meanwhile(trigger, *args, **kwargs):
        Trigger.objects.filter(pk=trigger.pk).update(enabled=False, next_poll_at=None)
        return original(trigger, *args, **kwargs)

    monkeypatch.setattr(polling, "_poll", disabled_meanwhile)
    assert poll([trigger.pk])[trigger.pk].status == "ok"
    trigger.refresh_from_db()
    assert trigger.next_poll_at is None and trigger.last_poll_ok
    assert trigger.poll_lease_owner == "" and trigger.poll_lease_until is None
