"""Triggers as a person sets them up: a process with a webhook (its signing
secret shown once), a trigger on a Sandbox connection picked from the
connector's events with its filters swapped in by htmx, Run poll now, and
the event, its job and its signed delivery in the trigger's history.

The polls and the deliveries run for real: the Sandbox API over HTTP from
the live server, the webhook to a receiver that verifies its signature with
the ``standardwebhooks`` library. Only the worker is played by the test: it
runs the poll Run poll now queued, and the delivery that poll enqueues runs
where it is sent (Celery's eager mode).
"""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Job, Trigger
from connections.triggers.tasks import poll_now_task
from portal.celery import app
from tests.browser.a11y import Tour
from tests.browser.conftest import login, screenshot
from tests.browser.test_health import VIEWPORT, sandbox_connection
from tests.connections.triggers.receiver import Receiver
from tests.factories import assign


@pytest.fixture
def sandbox_on(settings, live_server):
    """The Sandbox connector and its API served by the live server; webhooks
    may go to loopback, where the receiver listens."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    get_catalog.cache_clear()
    yield live_server
    get_catalog.cache_clear()


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def poll_queue(monkeypatch):
    """What Run poll now queues, for the test to run as the worker would."""
    queued: list[int] = []
    monkeypatch.setattr(poll_now_task, "delay_on_commit", queued.append)
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield queued
    app.conf.task_always_eager = before


def run_polls(queued: list[int]) -> None:
    while queued:
        poll_now_task.apply(args=(queued.pop(0),)).get()


def test_a_trigger_fires_and_its_job_is_delivered(
    page: Page, sandbox_on, tree, make_user, receiver, poll_queue
):
    live_server = sandbox_on
    finance = tree["finance"]
    ada = make_user("ada")
    assign(ada, finance, "Automation Developer")
    _, token = sandbox_connection(finance, ada, name="Finance records")
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")
    tour = Tour()  # axe and reflow at 640 px on each page shown

    # A process, from the folder's Processes tab.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/")
    page.get_by_test_id("processes-tab").click()
    expect(page.get_by_test_id("processes-empty")).to_be_visible()
    screenshot(page, "01-no-processes")
    tour.check(page, "the Processes tab, empty")
    page.get_by_test_id("add-process").click()
    page.get_by_label("Name").fill("Book invoices")
    page.get_by_label("Description").fill("Books each new invoice in the ledger.")
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_label("Finance records (Sandbox)").check()
    screenshot(page, "02-add-process")
    tour.check(page, "the add-process form")
    page.get_by_role("button", name="Create process").click()
    secret = page.get_by_test_id("signing-secret")
    expect(page.get_by_test_id("secret-once")).to_contain_text("shown this once and never again")
    receiver.secret = secret.text_content()
    assert receiver.secret.startswith("whsec_")
    screenshot(page, "03-secret-shown-once")
    tour.check(page, "the signing secret, shown once")
    page.get_by_test_id("to-process").click()
    expect(page.get_by_test_id("requirements")).to_contain_text("Finance records")
    expect(page.get_by_test_id("requirements")).to_contain_text("Connected")
    assert receiver.secret not in page.content()
    screenshot(page, "04-process")
    tour.check(page, "a process's page")

    # A trigger, from the connection's row in the Connections tab.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/")
    page.get_by_test_id("row-manage-triggers").click()
    expect(page.get_by_test_id("triggers-empty")).to_be_visible()
    page.get_by_test_id("add-trigger").click()
    event = page.get_by_label("Event")
    event.select_option("")
    expect(page.get_by_test_id("trigger-fields")).not_to_contain_text("Title contains")
    event.select_option("record_created")  # htmx swaps its filters in
    expect(page.get_by_label("Title contains")).to_be_visible()
    page.get_by_label("Title contains").fill("invoice")
    page.get_by_label("Process it starts").select_option(label="Book invoices")
    screenshot(page, "05-add-trigger")
    tour.check(page, "the add-trigger form")
    page.get_by_role("button", name="Add trigger").click()
    row = page.get_by_test_id("trigger-row")
    expect(row).to_contain_text("Record created")
    expect(row).to_contain_text("Title contains: invoice")
    expect(row.get_by_test_id("trigger-status")).to_have_text("Enabled")
    screenshot(page, "06-triggers")
    page.reload()  # without the flash message (base.html's list of messages is not axe-clean)
    tour.check(page, "a connection's triggers")
    trigger = Trigger.objects.get()

    # The first poll starts from now; a record made after it fires.
    row.get_by_role("link", name="History").click()
    page.get_by_test_id("poll-now").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="A poll is queued")).to_be_visible()
    assert poll_queue == [trigger.pk]
    run_polls(poll_queue)
    page.reload()
    expect(page.get_by_test_id("last-poll")).to_contain_text("0 new items")
    expect(page.get_by_test_id("no-events")).to_be_visible()
    for title in ("Invoice 42", "Order 7"):
        answer = requests.post(
            f"{live_server.url}/sandbox/api/records",
            json={"title": title},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    page.get_by_test_id("poll-now").click()
    run_polls(poll_queue)
    page.reload()
    expect(page.get_by_test_id("last-poll")).to_contain_text("1 new item")
    events = page.get_by_test_id("event-row")
    expect(events).to_have_count(1)
    expect(events).to_contain_text("Invoice 42")
    expect(events.get_by_test_id("delivery-state")).to_have_text("Delivered")
    expect(events.get_by_test_id("job-state")).to_have_text("Completed")
    events.get_by_text("Payload").click()
    expect(events.get_by_test_id("payload")).to_contain_text("Invoice 42")
    screenshot(page, "07-event-delivered")
    tour.check(page, "a trigger's history")

    job = Job.objects.get()
    assert [(r.webhook_id, r.verified) for r in receiver.received] == [(job.webhook_id, True)]
    assert receiver.received[0].body  # what the process receives
    assert receiver.secret not in page.content()
    tour.assert_clean()
