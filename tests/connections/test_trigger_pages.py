"""The Processes tab and a connection's Manage triggers pages, through HTTP:
what each shows, what each refuses and in which words, and that a signing
secret is shown once. Who may open them is the permission matrix's
(tests/portal/test_permission_matrix.py)."""

from __future__ import annotations

import pytest
from django.test import TestCase
from django.urls import reverse

from connections.models import Job, Process, Trigger, TriggerEvent
from connections.triggers import processes
from tests.factories import ConnectionFactory, FolderFactory, assign

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
