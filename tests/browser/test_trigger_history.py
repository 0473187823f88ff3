"""A trigger's history as a person uses it: its polls, Replay of an event
(asked first, then a new job whose webhook goes out with a new webhook-id,
verified by a receiver with the ``standardwebhooks`` library), editing the
process it starts (a refusal keeps what was typed; the signing secret is
kept), and deleting the connection, which names the trigger and the process
and asks to delete the trigger too.

The delivery the replay enqueues runs where it is sent (Celery's eager mode)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Connection, Job, Process, Trigger, TriggerEvent, TriggerPoll
from connections.triggers import configure, processes
from portal.celery import app
from tests.browser.a11y import Tour
from tests.browser.conftest import login, screenshot
from tests.browser.test_health import VIEWPORT, sandbox_connection
from tests.connections.triggers.receiver import Receiver
from tests.factories import assign


@pytest.fixture
def sandbox_webhooks(settings, live_server):
    """The Sandbox connector; webhooks may go to loopback, where the
    receiver listens; deliveries run where they are sent."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    get_catalog.cache_clear()
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield live_server
    app.conf.task_always_eager = before
    get_catalog.cache_clear()


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


def test_replay_edit_process_and_delete_the_connection(
    page: Page, page_problems, sandbox_webhooks, tree, make_user, receiver
):
    live_server = sandbox_webhooks
    # The refused edit answers 400 on purpose.
    page_problems.allow_console_error(r"status of 400 .*/processes/\d+/edit/")
    finance = tree["finance"]
    ada = make_user("ada")
    assign(ada, finance, "Automation Developer")
    connection, _ = sandbox_connection(finance, ada, name="Finance records")
    made = processes.create_process(
        folder=finance,
        name="Book invoices",
        webhook_url=receiver.url,
        requirements={"sandbox": connection},
    )
    receiver.secret = made.signing_secret
    trigger = configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=made.process
    )
    # Two polls: the first found nothing, the second one record, whose job was delivered.
    now = timezone.now()
    for minutes, items in ((10, 0), (5, 1)):
        TriggerPoll.objects.create(
            trigger=trigger,
            started_at=now - timedelta(minutes=minutes),
            finished_at=now - timedelta(minutes=minutes, seconds=-1),
            outcome=TriggerPoll.Outcome.OK,
            items=items,
            pages=1,
        )
    TriggerPoll.objects.create(
        trigger=trigger,
        started_at=now - timedelta(minutes=1),
        finished_at=now - timedelta(minutes=1),
        outcome=TriggerPoll.Outcome.FAILED,
        error="Could not reach sandbox: no answer within 10 s.",
    )
    event = TriggerEvent.objects.create(
        trigger=trigger, provider_id="42", summary="Invoice 42", payload={"title": "Invoice 42"}
    )
    first = Job.objects.create(
        process=made.process,
        trigger=trigger,
        event=event,
        webhook_id="msg_first_delivery",
        delivery_state=Job.DeliveryState.DELIVERED,
        state=Job.State.COMPLETED,
    )
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    tour = Tour()

    # The trigger's history: its polls, newest first, and the event.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    page.get_by_test_id("manage-triggers").click()
    page.get_by_test_id("trigger-row").get_by_role("link", name="History").click()
    polls = page.get_by_test_id("poll-row")
    expect(polls).to_have_count(3)
    expect(polls.first.get_by_test_id("poll-outcome")).to_have_text("Failed")
    expect(polls.first).to_contain_text("Could not reach sandbox")
    expect(polls.nth(1).get_by_test_id("poll-items")).to_have_text("1")
    screenshot(page, "01-history-with-polls")
    tour.check(page, "a trigger's history with its polls")

    # Replay the event: asked first, then a new job delivered with a new webhook-id.
    page.get_by_test_id("event-row").get_by_test_id("replay").click()
    expect(page.get_by_role("heading", name="Replay Invoice 42?")).to_be_visible()
    expect(page.get_by_test_id("replay-jobs")).to_contain_text(f"Job {first.pk}: Completed")
    screenshot(page, "02-replay-confirmation")
    tour.check(page, "the replay confirmation")
    assert Job.objects.count() == 1
    page.get_by_test_id("confirm-replay").click()
    expect(page.get_by_role("status").filter(has_text="replays Invoice 42")).to_be_visible()
    replayed = Job.objects.exclude(pk=first.pk).get()
    jobs = page.get_by_test_id("event-row").get_by_test_id("job")
    expect(jobs).to_have_count(2)
    expect(jobs.nth(1).get_by_test_id("replay-of")).to_have_text(f"Replay of job #{first.pk}")
    expect(jobs.nth(1).get_by_test_id("job-state")).to_have_text("Completed")
    screenshot(page, "03-replayed")
    assert [(hook.webhook_id, hook.verified) for hook in receiver.received] == [
        (replayed.webhook_id, True)
    ]
    assert replayed.webhook_id != first.webhook_id
    assert receiver.received[0].body["data"]["replay_of"] == first.pk

    # Edit the process it starts: a refusal keeps what was typed.
    page.get_by_role("link", name="Book invoices").click()
    expect(page.get_by_test_id("jobs")).to_contain_text(f"Replay of job #{first.pk}")
    page.get_by_test_id("edit-process").click()
    expect(page.get_by_label("Name")).to_have_value("Book invoices")
    page.get_by_label("Name").fill("Book all invoices")
    page.get_by_label("Webhook URL").fill("ftp://ledger.example.com/in")
    page.get_by_test_id("save-process").click()
    expect(page.get_by_text("Enter a full https:// address for the webhook.").first).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Book all invoices")
    expect(page.get_by_label("Webhook URL")).to_have_value("ftp://ledger.example.com/in")
    screenshot(page, "04-edit-process-refused")
    tour.check(page, "the edit-process form, refused")
    page.get_by_label("Webhook URL").fill(receiver.url + "v2")
    page.get_by_label("Description").fill("Credit notes too.")
    page.get_by_test_id("save-process").click()
    saved = page.get_by_role("status").filter(has_text="Book all invoices is saved.")
    expect(saved).to_be_visible()
    expect(page.get_by_test_id("webhook")).to_contain_text(receiver.url + "v2")
    screenshot(page, "05-process-saved")
    process = Process.objects.get()
    assert processes.signing_secret(process) == made.signing_secret  # kept
    assert made.signing_secret not in page.content()

    # Delete the connection: its trigger and the process are named; the
    # trigger goes only when that is ticked.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/{connection.pk}/")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_test_id("delete-triggers-list")).to_contain_text(
        "Record created → Book all invoices"
    )
    expect(page.get_by_test_id("delete-processes-list")).to_contain_text("Book all invoices")
    screenshot(page, "06-delete-connection")
    tour.check(page, "the delete confirmation naming triggers and processes")
    page.get_by_test_id("confirm-delete").click()  # the browser asks for the box first
    assert Connection.objects.filter(pk=connection.pk).exists()
    page.get_by_label("Also delete its 1 trigger").check()
    page.get_by_test_id("confirm-delete").click()
    deleted = page.get_by_role("status").filter(has_text="Finance records was deleted.")
    expect(deleted).to_be_visible()
    screenshot(page, "07-connection-deleted")
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not Trigger.objects.exists() and not Job.objects.exists()
    assert process.requirements.get().connection is None
    tour.assert_clean()
