"""Triggers polling the Sandbox API over real HTTP (the live server), with
the connection's credential through the guarded outbound client: what fires,
what does not fire twice, and when a trigger pauses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections import sandbox
from connections.catalog.events import PolledItem
from connections.models import Connection, ConnectionState, Job, SandboxRecord, TriggerEvent
from connections.triggers import outbox
from connections.triggers.polling import poll_trigger

pytestmark = pytest.mark.django_db(transaction=True)


def summaries(trigger) -> list[str]:
    return sorted(TriggerEvent.objects.filter(trigger=trigger).values_list("summary", flat=True))


def test_the_first_poll_does_not_replay_history(make_trigger, add_record, connection):
    add_record("Old 1")
    add_record("Old 2")
    trigger = make_trigger()
    outcome = poll_trigger(trigger.pk)
    assert (outcome.status, outcome.fired) == ("ok", 0)
    assert not TriggerEvent.objects.exists()
    trigger.refresh_from_db()
    assert trigger.cursor and trigger.last_poll_ok and trigger.next_poll_at > timezone.now()
    add_record("New 3")
    assert poll_trigger(trigger.pk).fired == 1
    assert summaries(trigger) == ["New 3"]
    # One job per event, for the trigger's process.
    job = Job.objects.get()
    assert (job.trigger_id, job.process_id) == (trigger.pk, trigger.process_id)
    assert job.delivery_state == Job.DeliveryState.PENDING and job.webhook_id.startswith("msg_")


def test_include_existing_fires_what_exists(make_trigger, add_record):
    add_record("Old 1")
    add_record("Old 2")
    trigger = make_trigger(include_existing=True)
    assert poll_trigger(trigger.pk).fired == 2
    assert summaries(trigger) == ["Old 1", "Old 2"]


def test_overlapping_polls_and_same_second_items_fire_once(make_trigger, add_record, ada):
    trigger = make_trigger()
    poll_trigger(trigger.pk)  # nothing yet: from the beginning
    first = add_record("First")
    assert poll_trigger(trigger.pk).fired == 1
    # Every later poll asks again from the cursor less the overlap: nothing new.
    assert poll_trigger(trigger.pk).fired == 0
    assert poll_trigger(trigger.pk).fired == 0
    # A record committed late with the same timestamp as the one stored.
    late = sandbox.add_record(user=ada, title="Second, same instant")
    SandboxRecord.objects.filter(pk=late.pk).update(
        created_at=SandboxRecord.objects.get(pk=first["id"]).created_at
    )
    assert poll_trigger(trigger.pk).fired == 1
    assert poll_trigger(trigger.pk).fired == 0
    assert summaries(trigger) == ["First", "Second, same instant"]
    assert Job.objects.count() == 2


def test_a_page_stored_again_makes_no_second_event_or_job(make_trigger, add_record):
    """A poll task delivered twice (its worker killed after the commit) finds
    the same items: the outbox stores none of them again."""
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    add_record("Once")
    before = trigger.__class__.objects.get(pk=trigger.pk).cursor
    poll_trigger(trigger.pk)
    trigger.__class__.objects.filter(pk=trigger.pk).update(cursor=before)  # as if not stored
    assert poll_trigger(trigger.pk).fired == 0
    event = TriggerEvent.objects.get()
    # Even handed the same item directly, the store makes nothing new.
    trigger.refresh_from_db()
    trigger.__class__.objects.filter(pk=trigger.pk).update(poll_lease_owner="me")
    item = PolledItem(event.provider_id, event.provider_id, None, "Once", {})
    assert outbox.store_page(trigger, lease_owner="me", items=[item], cursor=trigger.cursor) == []
    assert (TriggerEvent.objects.count(), Job.objects.count()) == (1, 1)


def test_filters_narrow_what_fires(make_trigger, add_record):
    trigger = make_trigger(filters={"title_contains": "invoice"})
    poll_trigger(trigger.pk)
    add_record("Invoice 1")
    add_record("Order 2")
    add_record("INVOICE 3")
    assert poll_trigger(trigger.pk).fired == 2
    assert summaries(trigger) == ["INVOICE 3", "Invoice 1"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"is_enabled": False}, "Paused: Records is disabled."),
        ({"state": ConnectionState.NEEDS_RECONNECT}, "Paused: Records needs reconnecting."),
    ],
)
def test_triggers_pause_with_their_connection_and_resume(
    make_trigger, add_record, connection, change, reason
):
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    Connection.objects.filter(pk=connection.pk).update(**change)
    add_record("While paused")
    outcome = poll_trigger(trigger.pk)
    assert (outcome.status, outcome.message) == ("paused", reason)
    trigger.refresh_from_db()
    assert trigger.last_error == reason and trigger.last_poll_ok is None
    assert trigger.next_poll_at > timezone.now()  # looked at again an interval later
    assert not TriggerEvent.objects.exists()
    Connection.objects.filter(pk=connection.pk).update(
        is_enabled=True, state=ConnectionState.CONNECTED
    )
    # Resumed from where it stopped: what came meanwhile fires now.
    assert poll_trigger(trigger.pk).fired == 1
    assert summaries(trigger) == ["While paused"]
    trigger.refresh_from_db()
    assert trigger.last_error == "" and trigger.last_poll_ok


def test_a_refused_token_marks_the_connection_as_a_health_check_would(make_trigger, ada):
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    for token in sandbox.active_tokens(ada):
        sandbox.revoke_token(token)
    outcome = poll_trigger(trigger.pk)
    assert outcome.status == "failed"
    assert "refused the credentials (401)" in outcome.message
    connection = Connection.objects.get()
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    # Failed polls back off; the next one pauses with the connection.
    trigger.refresh_from_db()
    assert trigger.consecutive_failures == 1 and trigger.backoff_until > timezone.now()
    trigger.__class__.objects.filter(pk=trigger.pk).update(backoff_until=None)
    assert poll_trigger(trigger.pk).status == "paused"


def test_a_failing_poll_backs_off_and_says_why(make_trigger, settings, connection):
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    settings.PORTAL_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    outcome = poll_trigger(trigger.pk)
    assert outcome.status == "failed" and "refused" in outcome.message
    trigger.refresh_from_db()
    first_wait = trigger.next_poll_at - trigger.last_polled_at
    assert trigger.last_poll_ok is False and trigger.last_error == outcome.message
    assert poll_trigger(trigger.pk).status == "waiting"  # not before its backoff
    trigger.__class__.objects.filter(pk=trigger.pk).update(backoff_until=None)
    poll_trigger(trigger.pk)
    trigger.refresh_from_db()
    assert trigger.consecutive_failures == 2
    assert trigger.next_poll_at - trigger.last_polled_at > first_wait * 1.5


def test_a_successful_poll_counts_as_the_health_check(make_trigger, connection):
    trigger = make_trigger()
    Connection.objects.filter(pk=connection.pk).update(next_check_at=timezone.now())
    poll_trigger(trigger.pk)
    connection.refresh_from_db()
    assert connection.last_success_at is not None
    assert connection.next_check_at > timezone.now() + timedelta(seconds=200)


def test_a_poll_that_is_not_due_does_nothing(make_trigger):
    trigger = make_trigger()
    poll_trigger(trigger.pk)
    assert poll_trigger(trigger.pk, if_due=True).status == "not_due"
