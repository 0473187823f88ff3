"""A trigger's history (its polls, Replay of an event), editing a process,
deleting a connection that has triggers, and reconnecting one as another
account, through HTTP: what each page shows, what it changes, what it
refuses and in which words. Who may open them is the permission matrix's
(tests/portal/test_permission_matrix.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from connections.models import (
    Connection,
    Delivery,
    Job,
    OAuthFlow,
    Process,
    Trigger,
    TriggerEvent,
    TriggerPoll,
)
from connections.triggers import configure, processes, replay
from connections.views.triggers import POLLS_PER_PAGE
from portal.models import Role
from tests.factories import ConnectionFactory, FolderFactory, assign
from tests.queries import page_queries

SECRET = {"token": "sbx_history_secret_value"}
HOOK = "https://robots.example.com/hooks/invoices"


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


@pytest.fixture
def made(folder):
    return processes.create_process(
        folder=folder, name="Book invoices", webhook_url=HOOK, job_queue=True
    )


@pytest.fixture
def process(made):
    return made.process


@pytest.fixture
def trigger(connection, process):
    return configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )


def history_url(trigger: Trigger, name: str = "trigger_detail", *more) -> str:
    connection = trigger.connection
    return reverse(name, args=[connection.folder_id, connection.pk, trigger.pk, *more])


def add_event(trigger: Trigger, summary: str = "Invoice 7") -> Job:
    event = TriggerEvent.objects.create(
        trigger=trigger, provider_id=summary, summary=summary, payload={"title": summary}
    )
    return Job.objects.create(
        process=trigger.process,
        trigger=trigger,
        event=event,
        webhook_id=f"msg_{summary.replace(' ', '_')}",
        delivery_state=Job.DeliveryState.DELIVERED,
        state=Job.State.COMPLETED,
    )


def add_poll(trigger: Trigger, minutes_ago: int, **fields) -> TriggerPoll:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return TriggerPoll.objects.create(
        trigger=trigger,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        **{"outcome": TriggerPoll.Outcome.OK, **fields},
    )


def count_queries(client, url) -> int:
    count, response = page_queries(client, url)
    assert response.status_code == 200
    return count


# --- Poll history ---------------------------------------------------------------


def test_poll_history_empty_state(client, developer, trigger):
    page = client.get(history_url(trigger)).content.decode()
    assert 'data-testid="no-polls"' in page and "No poll yet" in page


def test_poll_history_lists_polls_newest_first(client, developer, trigger):
    add_poll(trigger, 30, items=2, pages=1)
    add_poll(trigger, 20, outcome=TriggerPoll.Outcome.FAILED, error="The provider answered 500.")
    add_poll(trigger, 10, outcome=TriggerPoll.Outcome.PAUSED, error="Records needs reconnecting.")
    page = client.get(history_url(trigger)).content.decode()
    table = page[page.index('data-testid="polls"') :]
    assert table.index("Paused") < table.index("Failed") < table.index("Succeeded")
    assert "The provider answered 500." in table and "Records needs reconnecting." in table
    assert '<td data-testid="poll-items">2</td>' in table


def test_poll_history_is_paginated_on_its_own(client, developer, trigger):
    for minutes in range(POLLS_PER_PAGE + 3):
        add_poll(trigger, minutes + 1, items=minutes)
    first = client.get(history_url(trigger)).content.decode()
    assert first.count('data-testid="poll-row"') == POLLS_PER_PAGE
    assert f"Page 1 of 2 · {POLLS_PER_PAGE + 3} polls" in first
    assert "?polls=2#polls" in first
    second = client.get(history_url(trigger) + "?polls=2").content.decode()
    assert second.count('data-testid="poll-row"') == 3
    assert "Newer polls" in second


def test_history_costs_the_same_whatever_it_holds(client, developer, trigger):
    add_poll(trigger, 1)
    first = add_event(trigger, "First")
    url = history_url(trigger)
    few = count_queries(client, url)
    for n in range(8):
        add_poll(trigger, n + 2, items=n, pages=1)
        job = add_event(trigger, f"Item {n}")
        Delivery.objects.create(job=job, attempt=1, webhook_id=job.webhook_id, state="delivered")
        replay.replay_event(job.event)
    replay.replay_event(first.event)
    assert count_queries(client, url) == few
    assert count_queries(client, url + "?polls=1&page=1") == few


# --- Replay -------------------------------------------------------------------------


def test_replay_asks_first_then_makes_a_new_job(client, developer, trigger, monkeypatch):
    job = add_event(trigger)
    page = client.get(history_url(trigger)).content.decode()
    replay_url = history_url(trigger, "trigger_event_replay", job.event_id)
    assert replay_url in page
    confirm = client.get(replay_url)
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Replay Invoice 7?" in text and "with a new webhook-id" in text
    assert f"Job {job.pk}: Completed" in text and "already ran for this event" in text
    assert Job.objects.count() == 1  # asking changes nothing

    sent: list[int] = []
    monkeypatch.setattr("connections.views.triggers.enqueue_deliveries", sent.extend)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(replay_url, follow=True)
    replayed = Job.objects.exclude(pk=job.pk).get()
    assert sent == [replayed.pk]
    assert replayed.replay_of_id == job.pk and replayed.webhook_id != job.webhook_id
    text = response.content.decode()
    assert f"Job {replayed.pk} replays Invoice 7 for Book invoices" in text
    assert f"Replay of job #{job.pk}" in text
    # The process's page says so too.
    process_page = client.get(
        reverse("process_detail", args=[trigger.connection.folder_id, trigger.process_id])
    ).content.decode()
    assert f"Replay of job #{job.pk}" in process_page


def test_replay_needs_a_post_of_the_form(client, developer, trigger):
    job = add_event(trigger)
    url = history_url(trigger, "trigger_event_replay", job.event_id)
    client.handler.enforce_csrf_checks = True
    assert client.post(url).status_code == 403  # no CSRF token
    assert Job.objects.count() == 1


def test_a_viewer_sees_no_replay_and_cannot_replay(client, make_user, folder, trigger):
    job = add_event(trigger)
    viewer = make_user("viewer")
    assign(viewer, folder, "Viewer")
    client.force_login(viewer)
    assert 'data-testid="replay"' not in client.get(history_url(trigger)).content.decode()
    url = history_url(trigger, "trigger_event_replay", job.event_id)
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    assert Job.objects.count() == 1


def _role(name: str, *codenames: str) -> str:
    role = Role.objects.create(name=name)
    role.permissions.set(Permission.objects.filter(codename__in=codenames))
    return name


def test_replay_and_retry_need_processes_manage_on_every_page(client, make_user, folder, trigger):
    """One rule (permissions.RERUN_JOBS) for the trigger's page, the process's
    page and the API: Triggers - Manage without Processes - Manage starts no
    job; Processes - Manage with Triggers - View does."""
    job = add_event(trigger)
    job.delivery_state = Job.DeliveryState.FAILED
    job.save(update_fields=["delivery_state"])
    replay_url = history_url(trigger, "trigger_event_replay", job.event_id)
    retry_url = history_url(trigger, "trigger_job_retry", job.pk)
    process_retry = reverse("process_job_retry", args=[folder.pk, trigger.process_id, job.pk])

    triggers_only = make_user("triggers-only")
    assign(
        triggers_only,
        folder,
        _role("Triggers only", "view_connections", "view_triggers", "view_jobs", "manage_triggers"),
    )
    client.force_login(triggers_only)
    page = client.get(history_url(trigger)).content.decode()
    assert 'data-testid="replay"' not in page and 'data-testid="retry"' not in page
    for url in (replay_url, retry_url):
        refused = client.post(url)
        assert refused.status_code == 403
        assert "Processes - Manage" in refused.content.decode()
    assert Job.objects.count() == 1

    runs_jobs = make_user("runs-jobs")
    assign(
        runs_jobs,
        folder,
        _role(
            "Runs jobs",
            "view_connections",
            "view_triggers",
            "view_jobs",
            "view_processes",
            "manage_processes",
        ),
    )
    client.force_login(runs_jobs)
    page = client.get(history_url(trigger)).content.decode()
    assert 'data-testid="replay"' in page and 'data-testid="retry"' in page
    assert client.post(retry_url).status_code == 302
    job.refresh_from_db()
    assert job.delivery_state != Job.DeliveryState.FAILED
    assert client.post(process_retry).status_code == 302
    assert client.post(replay_url).status_code == 302
    assert Job.objects.filter(replay_of=job).count() == 1


def test_an_event_of_another_trigger_is_not_found(client, developer, trigger, connection, process):
    other = configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )
    job = add_event(other)
    assert (
        client.post(history_url(trigger, "trigger_event_replay", job.event_id)).status_code == 404
    )
    assert Job.objects.count() == 1


# --- Edit a process ---------------------------------------------------------------


def test_edit_a_process_keeps_its_signing_secret(client, developer, folder, process, connection):
    secret = processes.signing_secret(process)
    url = reverse("process_edit", args=[folder.pk, process.pk])
    form = client.get(url).content.decode()
    assert 'value="Book invoices"' in form and HOOK in form
    assert "kept when the address changes" in form
    response = client.post(
        url,
        {
            "name": "Book all invoices",
            "description": "Now with credit notes.",
            "webhook_url": "https://robots.example.com/hooks/v2",
            "job_queue": "on",
            "requirements": [connection.pk],
        },
        follow=True,
    )
    assert "Book all invoices is saved." in response.content.decode()
    process.refresh_from_db()
    assert process.name == "Book all invoices" and process.description == "Now with credit notes."
    assert process.webhook_url == "https://robots.example.com/hooks/v2"
    assert processes.signing_secret(process) == secret
    assert process.requirements.get().connection == connection
    # Leaving a connection out stops requiring it.
    client.post(url, {"name": "Book all invoices", "webhook_url": HOOK})
    process.refresh_from_db()
    assert not process.requirements.exists() and not process.job_queue


def test_edit_refusals_keep_what_was_typed_and_change_nothing(client, developer, folder, process):
    processes.create_process(folder=folder, name="Taken", job_queue=True)
    url = reverse("process_edit", args=[folder.pk, process.pk])
    before = Process.objects.filter(pk=process.pk).values().get()
    cases = [
        (
            {"name": "Typed name", "webhook_url": "ftp://typed.example.com"},
            "Enter a full https:// address",
        ),
        ({"name": "Typed name"}, "Give a webhook address, or let robots pull its jobs, or both."),
        ({"name": "Taken", "job_queue": "on"}, "Finance already has a process named Taken."),
    ]
    for data, message in cases:
        response = client.post(url, data)
        assert response.status_code == 400, data
        text = response.content.decode()
        assert message in text, data
        assert f'value="{data["name"]}"' in text  # what the user typed stays
        if "webhook_url" in data:
            assert data["webhook_url"] in text
        assert Process.objects.filter(pk=process.pk).values().get() == before


def test_a_first_webhook_gets_a_secret_shown_once(client, developer, folder):
    queue_only = processes.create_process(folder=folder, name="Queue", job_queue=True).process
    url = reverse("process_edit", args=[folder.pk, queue_only.pk])
    response = client.post(url, {"name": "Queue", "job_queue": "on", "webhook_url": HOOK})
    assert response.status_code == 200
    queue_only.refresh_from_db()
    secret = processes.signing_secret(queue_only)
    assert secret.startswith("whsec_") and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    detail = reverse("process_detail", args=[folder.pk, queue_only.pk])
    assert secret not in client.get(detail).content.decode()


def test_edit_keeps_a_requirement_still_to_choose(client, developer, folder, process):
    process.requirements.create(connector_key="sandbox", connection=None)
    url = reverse("process_edit", args=[folder.pk, process.pk])
    client.post(url, {"name": "Book invoices", "webhook_url": HOOK})
    assert process.requirements.get().connector_key == "sandbox"


def test_a_viewer_cannot_edit_a_process(client, make_user, folder, process):
    viewer = make_user("viewer")
    assign(viewer, folder, "Viewer")
    client.force_login(viewer)
    url = reverse("process_edit", args=[folder.pk, process.pk])
    detail = client.get(reverse("process_detail", args=[folder.pk, process.pk])).content.decode()
    assert url not in detail
    assert client.post(url, {"name": "Hijacked", "job_queue": "on"}).status_code == 403
    process.refresh_from_db()
    assert process.name == "Book invoices"


# --- Deleting a connection that has triggers --------------------------------------


def test_delete_names_triggers_and_processes_and_needs_the_confirmation(
    client, developer, folder, connection, process, trigger
):
    process.requirements.create(connector_key="sandbox", connection=connection)
    add_event(trigger)
    url = reverse("connection_delete", args=[folder.pk, connection.pk])
    page = client.get(url).content.decode()
    assert "Record created → Book invoices" in page
    assert 'data-testid="delete-processes-list"' in page and "Book invoices" in page
    assert "Also delete its 1 trigger" in page and "required" in page

    refused = client.post(url)
    assert refused.status_code == 400
    text = refused.content.decode()
    assert "Records has 1 trigger (Record created → Book invoices)" in text
    assert "Nothing was deleted." in text
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert Trigger.objects.filter(pk=trigger.pk).exists() and Job.objects.exists()

    response = client.post(url, {"delete_triggers": "1"}, follow=True)
    assert "Records was deleted." in response.content.decode()
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not Trigger.objects.exists() and not Job.objects.exists()
    # The process stays, its requirement to choose again.
    assert process.requirements.get().connection is None


def test_delete_without_triggers_needs_no_checkbox(client, developer, folder, connection):
    url = reverse("connection_delete", args=[folder.pk, connection.pk])
    page = client.get(url).content.decode()
    assert "delete_triggers" not in page
    assert client.post(url).status_code == 302
    assert not Connection.objects.filter(pk=connection.pk).exists()


# --- Reconnecting as another account -----------------------------------------------


def _flow(user, connection) -> OAuthFlow:
    return OAuthFlow.objects.create(
        state=f"history-{connection.pk}",
        user=user,
        session_binding="history",
        folder=connection.folder,
        connection=connection,
        connector_key=connection.connector_key,
        auth_type=connection.auth_type,
        own_app=connection.own_app,
        name=connection.name,
        client_id="history-app",
        redirect_uri="http://testserver/oauth/callback/",
        issuer="http://testserver/sandbox/oauth/",
        pending_identity="someone.else@example.com",
        expires_at=timezone.now() + timedelta(minutes=10),
    )


def test_another_account_warns_about_the_triggers(client, developer, folder, process):
    oauth = ConnectionFactory(
        folder=folder,
        sandbox=True,
        auth_type="oauth2_authorization_code",
        name="Mailbox",
        account_identity="ada@example.com",
        secret={"access_token": "history-access", "refresh_token": "history-refresh"},
    )
    url = reverse("oauth_confirm_identity", args=[_flow(developer, oauth).pk])
    assert 'data-testid="triggers-warning"' not in client.get(url).content.decode()
    for _ in range(2):
        configure.create_trigger(
            connection=oauth, event_key="record_created", filters={}, process=process
        )
    page = client.get(url).content.decode()
    assert 'data-testid="triggers-warning"' in page
    assert "Mailbox has 2 triggers" in page and "see another account&#x27;s data" in page
    assert "someone.else@example.com" in page
