"""The Processes tab and a connection's Manage triggers pages, through HTTP:
what each shows, what each refuses and in which words, and that a signing
secret is shown once. Who may open them is the permission matrix's
(tests/portal/test_permission_matrix.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from connections.models import ConnectionState, Delivery, Job, Process, Trigger, TriggerEvent
from connections.triggers import configure, processes
from portal.models import Role
from tests.factories import ConnectionFactory, FolderFactory, assign
from tests.queries import page_queries

SECRET = {"token": "sbx_pages_secret_value"}


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def folder(db):
    return FolderFactory(name="Finance")


@pytest.fixture
def developer(make_user, folder, client):
    user = make_user("dev")
    assign(user, folder, "Automation Developer")
    client.force_login(user)
    return user


@pytest.fixture
def connection(folder):
    return ConnectionFactory(folder=folder, sandbox=True, name="Records", secret=SECRET)


def make_job(process, connection, *, summary="Invoice 7", delivery=Job.DeliveryState.FAILED):
    trigger = Trigger.objects.filter(process=process, connection=connection).first()
    trigger = trigger or Trigger.objects.create(
        connection=connection, event_key="record_created", process=process
    )
    event = TriggerEvent.objects.create(
        trigger=trigger,
        provider_id=summary,
        summary=summary,
        payload={"id": 7, "title": summary},
    )
    return Job.objects.create(
        process=process,
        trigger=trigger,
        event=event,
        webhook_id=f"msg_{summary}",
        delivery_state=delivery,
        delivery_attempts=3 if delivery == Job.DeliveryState.FAILED else 0,
    )


# --- Processes ------------------------------------------------------------------


def test_processes_empty_state(client, developer, folder):
    page = client.get(reverse("folder_processes", args=[folder.pk])).content.decode()
    assert "No processes in this folder yet" in page
    assert reverse("process_add", args=[folder.pk]) in page


def test_viewer_sees_processes_but_no_add(client, make_user, folder):
    viewer = make_user("viewer")
    assign(viewer, folder, "Viewer")
    client.force_login(viewer)
    page = client.get(reverse("folder_processes", args=[folder.pk])).content.decode()
    assert "You cannot add processes in this folder." in page
    assert reverse("process_add", args=[folder.pk]) not in page


def test_create_process_shows_the_secret_once(client, developer, folder, connection):
    response = client.post(
        reverse("process_add", args=[folder.pk]),
        {
            "name": "Book invoices",
            "description": "Books each new invoice.",
            "webhook_url": "https://robots.example.com/hooks/invoices",
            "requirements": [connection.pk],
        },
    )
    assert response.status_code == 200
    process = Process.objects.get(name="Book invoices")
    secret = processes.signing_secret(process)
    assert secret.startswith("whsec_")
    assert secret in response.content.decode()
    assert "shown this once and never again" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert process.requirements.get().connection == connection
    # Never again: not on its page, not in the list.
    for url in (
        reverse("process_detail", args=[folder.pk, process.pk]),
        reverse("folder_processes", args=[folder.pk]),
    ):
        assert secret not in client.get(url).content.decode()


def test_create_process_refusals_change_nothing(client, developer, folder, connection):
    url = reverse("process_add", args=[folder.pk])
    other = ConnectionFactory(folder=folder, sandbox=True, name="More records", secret=SECRET)
    elsewhere = ConnectionFactory(folder=FolderFactory(), sandbox=True, name="Elsewhere")
    cases = [
        ({"name": ""}, "This field is required."),
        ({"name": "No way"}, "Give a webhook address, or let robots pull its jobs, or both."),
        ({"name": "Bad", "webhook_url": "ftp://x"}, "Enter a full https:// address"),
        (
            {"name": "Two", "job_queue": "on", "requirements": [connection.pk, other.pk]},
            "Choose one connection per connector",
        ),
        ({"name": "Far", "job_queue": "on", "requirements": [elsewhere.pk]}, "Select a valid"),
    ]
    for data, message in cases:
        response = client.post(url, data)
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    assert not Process.objects.exists()
    client.post(url, {"name": "Queue", "job_queue": "on"})
    response = client.post(url, {"name": "Queue", "job_queue": "on"})
    assert "Finance already has a process named Queue." in response.content.decode()


def test_process_page_shows_requirements_health_and_jobs(client, developer, folder, connection):
    made = processes.create_process(
        folder=folder, name="Book invoices", job_queue=True, requirements={"sandbox": connection}
    )
    make_job(made.process, connection)
    page = client.get(reverse("process_detail", args=[folder.pk, made.process.pk])).content.decode()
    assert "Records" in page and "Connected" in page
    assert "Invoice 7" in page and "Failed (3 attempts)" in page
    assert 'data-testid="retry"' in page


def test_retry_a_failed_delivery(client, developer, folder, connection, monkeypatch):
    made = processes.create_process(
        folder=folder, name="Hook", webhook_url="https://robots.example.com/hook"
    )
    job = make_job(made.process, connection)
    sent = []
    monkeypatch.setattr("connections.views.processes.enqueue_deliveries", sent.extend)
    url = reverse("process_job_retry", args=[folder.pk, made.process.pk, job.pk])
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(url, follow=True)
    assert "delivery is due again" in response.content.decode()
    job.refresh_from_db()
    assert job.delivery_state == Job.DeliveryState.RETRYING and sent == [job.pk]
    response = client.post(url, follow=True)
    assert "has not failed: there is nothing to retry" in response.content.decode()


def test_viewer_sees_no_retry_and_cannot_retry(client, make_user, folder, connection):
    made = processes.create_process(folder=folder, name="Queue", job_queue=True)
    job = make_job(made.process, connection)
    viewer = make_user("viewer")
    assign(viewer, folder, "Viewer")
    client.force_login(viewer)
    page = client.get(reverse("process_detail", args=[folder.pk, made.process.pk])).content.decode()
    assert "Invoice 7" in page and 'data-testid="retry"' not in page
    url = reverse("process_job_retry", args=[folder.pk, made.process.pk, job.pk])
    assert client.post(url).status_code == 403


def test_automation_user_sees_no_processes_tab(client, make_user, folder):
    user = make_user("runner")
    assign(user, folder, "Automation User")
    client.force_login(user)
    page = client.get(reverse("folder_connections", args=[folder.pk])).content.decode()
    assert reverse("folder_processes", args=[folder.pk]) not in page


def test_delete_process_names_its_triggers(client, developer, folder, connection):
    made = processes.create_process(folder=folder, name="Queue", job_queue=True)
    make_job(made.process, connection)
    url = reverse("process_delete", args=[folder.pk, made.process.pk])
    page = client.get(url).content.decode()
    assert "record_created on Records" in page and "1 job" in page
    response = client.post(url, follow=True)
    assert "Queue was deleted, with its triggers and jobs." in response.content.decode()
    assert not Process.objects.exists() and not Trigger.objects.exists()


def test_a_process_of_another_folder_is_not_found(client, developer, folder):
    made = processes.create_process(folder=FolderFactory(), name="Far", job_queue=True)
    url = reverse("process_detail", args=[folder.pk, made.process.pk])
    assert client.get(url).status_code == 404


# --- Manage triggers ------------------------------------------------------------


@pytest.fixture
def process(folder):
    return processes.create_process(folder=folder, name="Book invoices", job_queue=True).process


def triggers_url(connection, name="connection_triggers", *more):
    return reverse(name, args=[connection.folder_id, connection.pk, *more])


def make_trigger(connection, process, **options):
    return configure.create_trigger(
        connection=connection,
        event_key="record_created",
        filters=options.pop("filters", {}),
        process=process,
        **options,
    )


def test_manage_triggers_is_linked_from_the_connection_and_its_row(
    client, developer, folder, connection
):
    page = client.get(reverse("connection_detail", args=[folder.pk, connection.pk])).content
    assert triggers_url(connection).encode() in page
    row = client.get(reverse("folder_connections", args=[folder.pk])).content.decode()
    assert 'data-testid="row-manage-triggers"' in row and triggers_url(connection) in row


def test_no_manage_triggers_link_without_triggers_view(client, make_user, folder, connection):
    user = make_user("runner")
    assign(user, folder, "Automation User")
    client.force_login(user)
    page = client.get(reverse("connection_detail", args=[folder.pk, connection.pk])).content
    assert triggers_url(connection).encode() not in page
    row = client.get(reverse("folder_connections", args=[folder.pk])).content.decode()
    assert triggers_url(connection) not in row


def test_trigger_list_empty_state(client, developer, connection):
    page = client.get(triggers_url(connection)).content.decode()
    assert "No triggers on Records yet" in page and "record created" in page
    assert triggers_url(connection, "trigger_add") in page


def test_add_without_a_process_sends_to_processes(client, developer, folder, connection):
    page = client.get(triggers_url(connection, "trigger_add")).content.decode()
    assert "it has none yet" in page and reverse("process_add", args=[folder.pk]) in page


def test_choosing_an_event_swaps_in_its_filters(client, developer, connection, process):
    url = triggers_url(connection, "trigger_add")
    page = client.get(url).content.decode()
    assert 'hx-target="#trigger-fields"' in page and "Record created" in page
    fragment = client.get(
        url,
        {"event_key": "record_created"},
        headers={"HX-Request": "true", "HX-Target": "trigger-fields"},
    )
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div id="trigger-fields"')
    assert "Title contains" in body and "<html" not in body
    assert "Fire for the items that exist now too" in body
    assert "HX-Target" in fragment["Vary"]


def test_add_a_trigger(client, developer, connection, process):
    response = client.post(
        triggers_url(connection, "trigger_add"),
        {"event_key": "record_created", "field_title_contains": "invoice", "process": process.pk},
        follow=True,
    )
    trigger = Trigger.objects.get()
    assert (trigger.filters, trigger.process, trigger.enabled) == (
        {"title_contains": "invoice"},
        process,
        True,
    )
    page = response.content.decode()
    assert "The trigger is added" in page and "Title contains: invoice" in page
    assert "Book invoices" in page and "Enabled" in page


def test_add_refusals_change_nothing(client, developer, connection, process):
    url = triggers_url(connection, "trigger_add")
    cases = [
        ({"process": process.pk}, "Choose one of Sandbox&#x27;s events."),
        ({"event_key": "nope", "process": process.pk}, "Choose one of Sandbox&#x27;s events."),
        ({"event_key": "record_created"}, "Choose the process the trigger starts."),
        ({"event_key": "record_created", "process": "999"}, "Choose one of the folder&#x27;s"),
        (
            {
                "event_key": "record_created",
                "process": process.pk,
                "field_title_contains": "x" * 201,
            },
            "Title contains is longer than 200 characters.",
        ),
    ]
    for data, message in cases:
        response = client.post(url, data)
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    assert not Trigger.objects.exists()


def test_missing_scopes_are_named_with_a_reconnect_link(client, developer, folder, process):
    connection = ConnectionFactory(
        folder=folder,
        sandbox=True,
        name="Signed in",
        auth_type="oauth2_authorization_code",
        secret={
            "access_token": "sandbox-access-token-1",
            "refresh_token": "r" * 12,
            "scope": "profile",
        },
    )
    response = client.post(
        triggers_url(connection, "trigger_add"),
        {"event_key": "record_created", "process": process.pk},
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "was not granted records.read" in page and "<code>records.read</code>" in page
    assert reverse("connection_reconnect", args=[folder.pk, connection.pk]) in page
    assert not Trigger.objects.exists()


def test_paused_triggers_say_why(client, developer, connection, process):
    make_trigger(connection, process)
    connection.is_enabled = False
    connection.save(update_fields=["is_enabled"])
    page = client.get(triggers_url(connection)).content.decode()
    assert "Paused: Records is disabled." in page and ">Paused<" in page
    connection.is_enabled, connection.state = True, ConnectionState.NEEDS_RECONNECT
    connection.save(update_fields=["is_enabled", "state"])
    page = client.get(triggers_url(connection)).content.decode()
    assert "Paused: Records needs reconnecting." in page


def test_last_poll_and_its_error_are_listed(client, developer, connection, process):
    trigger = make_trigger(connection, process)
    Trigger.objects.filter(pk=trigger.pk).update(
        last_polled_at=timezone.now(),
        last_poll_ok=False,
        last_error="The provider answered 500.",
        consecutive_failures=2,
    )
    page = client.get(triggers_url(connection)).content.decode()
    assert "failed" in page and "The provider answered 500. (2 failures in a row)" in page


def test_disable_enable_edit_delete(client, developer, folder, connection, process):
    trigger = make_trigger(connection, process, filters={"title_contains": "a"})
    enabled = triggers_url(connection, "trigger_set_enabled", trigger.pk)
    client.post(enabled, {"enabled": "0"})
    trigger.refresh_from_db()
    assert not trigger.enabled
    assert ">Disabled<" in client.get(triggers_url(connection)).content.decode()
    client.post(enabled, {"enabled": "1"})
    trigger.refresh_from_db()
    assert trigger.enabled

    other = processes.create_process(folder=folder, name="Other", job_queue=True).process
    edit = triggers_url(connection, "trigger_edit", trigger.pk)
    assert 'value="a"' in client.get(edit).content.decode()
    response = client.post(edit, {"field_title_contains": "b", "process": other.pk}, follow=True)
    assert "The trigger is saved." in response.content.decode()
    trigger.refresh_from_db()
    assert (trigger.filters, trigger.process) == ({"title_contains": "b"}, other)
    assert client.post(edit, {"process": ""}).status_code == 400

    delete = triggers_url(connection, "trigger_delete", trigger.pk)
    assert "Delete the trigger Record created on Records?" in client.get(delete).content.decode()
    response = client.post(delete, follow=True)
    assert "The trigger was deleted" in response.content.decode()
    assert not Trigger.objects.exists()


def test_run_poll_now_queues_the_poll(client, developer, connection, process, monkeypatch):
    trigger = make_trigger(connection, process)
    queued = []
    monkeypatch.setattr(
        "connections.triggers.configure.poll_now_task.delay_on_commit", queued.append
    )
    url = triggers_url(connection, "trigger_poll_now", trigger.pk)
    response = client.post(url, follow=True)
    assert queued == [trigger.pk] and "A poll is queued" in response.content.decode()
    configure.disable_trigger(trigger)
    response = client.post(url, follow=True)
    assert queued == [trigger.pk] and "The trigger is disabled" in response.content.decode()


def test_history_shows_events_jobs_deliveries_and_retry(
    client, developer, connection, process, monkeypatch
):
    job = make_job(process, connection)
    Delivery.objects.create(
        job=job, attempt=1, webhook_id=job.webhook_id, state="failed", status_code=500,
        error="The receiver answered 500 Internal Server Error.",
    )  # fmt: skip
    page = client.get(triggers_url(connection, "trigger_detail", job.trigger_id)).content.decode()
    assert "Invoice 7" in page and "&#x27;title&#x27;: &#x27;Invoice 7&#x27;" in page
    assert f"Job {job.pk}" in page and "The receiver answered 500" in page
    assert 'data-testid="retry"' in page
    sent = []
    monkeypatch.setattr("connections.views.triggers.enqueue_deliveries", sent.extend)
    url = triggers_url(connection, "trigger_job_retry", job.trigger_id, job.pk)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(url, follow=True)
    assert "delivery is due again" in response.content.decode() and sent == [job.pk]


def test_history_empty_state_and_no_actions_for_a_viewer(
    client, make_user, folder, connection, process
):
    trigger = make_trigger(connection, process)
    viewer = make_user("viewer")
    assign(viewer, folder, "Viewer")
    client.force_login(viewer)
    page = client.get(triggers_url(connection, "trigger_detail", trigger.pk)).content.decode()
    assert "No event yet." in page and "Run poll now" not in page
    listing = client.get(triggers_url(connection)).content.decode()
    assert "History" in listing and "Add trigger" not in listing and "Disable" not in listing


def test_a_trigger_of_another_connection_is_not_found(
    client, developer, folder, connection, process
):
    trigger = make_trigger(connection, process)
    other = ConnectionFactory(folder=folder, sandbox=True, name="Other", secret=SECRET)
    assert client.get(triggers_url(other, "trigger_detail", trigger.pk)).status_code == 404


def count_queries(client, url) -> int:
    count, response = page_queries(client, url)
    assert response.status_code == 200
    return count


def test_list_pages_cost_the_same_whatever_they_hold(client, developer, folder, connection):
    process = processes.create_process(
        folder=folder, name="Book", job_queue=True, requirements={"sandbox": connection}
    ).process
    trigger = make_trigger(connection, process)
    urls = [
        reverse("folder_processes", args=[folder.pk]),
        reverse("process_detail", args=[folder.pk, process.pk]),
        triggers_url(connection),
        triggers_url(connection, "trigger_detail", trigger.pk),
    ]
    make_job(process, connection, summary="First")
    few = [count_queries(client, url) for url in urls]
    for n in range(6):
        more = processes.create_process(
            folder=folder, name=f"More {n}", job_queue=True, requirements={"sandbox": connection}
        ).process
        make_trigger(connection, more)
        job = make_job(process, connection, summary=f"Item {n}")
        Delivery.objects.create(job=job, attempt=1, webhook_id=job.webhook_id, state="failed")
    assert [count_queries(client, url) for url in urls] == few


def test_jobs_are_shown_only_with_jobs_view(client, make_user, folder, connection, process):
    job = make_job(process, connection)
    role = Role.objects.create(name="Trigger watcher")
    role.permissions.add(
        *Permission.objects.filter(codename__in=["view_connections", "view_triggers"])
    )
    watcher = make_user("watcher")
    assign(watcher, folder, "Trigger watcher")
    client.force_login(watcher)
    page = client.get(triggers_url(connection, "trigger_detail", job.trigger_id)).content.decode()
    assert "Invoice 7" in page and f"Job {job.pk}" not in page


def test_replace_signing_secret_asks_first_then_shows_the_new_one_once(client, developer, folder):
    made = processes.create_process(
        folder=folder, name="Book", webhook_url="https://hooks.example.com/book"
    )
    url = reverse("process_replace_secret", args=[folder.pk, made.process.pk])
    asked = client.get(url)
    assert asked.status_code == 200 and "The old secret stops working at once" in asked.text
    assert processes.signing_secret(made.process) == made.signing_secret  # nothing yet
    answer = client.post(url)
    assert answer.status_code == 200 and answer["Cache-Control"].startswith("max-age=0")
    new = processes.signing_secret(Process.objects.get(pk=made.process.pk))
    assert new != made.signing_secret and new in answer.text
    # Shown once: the process page never shows it again.
    page = client.get(reverse("process_detail", args=[folder.pk, made.process.pk]))
    assert new not in page.text and "Replace signing secret" in page.text


def test_a_process_without_a_webhook_has_no_secret_to_replace(client, developer, folder):
    made = processes.create_process(folder=folder, name="Queue", job_queue=True)
    url = reverse("process_replace_secret", args=[folder.pk, made.process.pk])
    response = client.post(url, follow=True)
    assert "has no webhook: there is no secret to replace" in response.text
    assert not Process.objects.get(pk=made.process.pk).ciphertext
