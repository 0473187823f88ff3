"""Making processes and triggers: the webhook secret sealed and shown once;
a trigger's event, filters, process and scopes checked, nothing made when
refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from standardwebhooks.webhooks import Webhook

from connections import vault
from connections.models import Process, Trigger
from connections.triggers import configure, processes
from tests.factories import ConnectionFactory, FolderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def folder():
    return FolderFactory(name="Finance")


@pytest.fixture
def process(folder):
    return processes.create_process(
        folder=folder, name="Book", webhook_url="https://hooks.example.com/book"
    ).process


def oauth_connection(folder, scope: str):
    return ConnectionFactory(
        folder=folder,
        sandbox=True,
        auth_type="oauth2_authorization_code",
        secret={
            "access_token": "sandbox-access-token-1",
            "refresh_token": "r" * 12,
            "scope": scope,
        },
    )


def test_a_process_secret_is_sealed_and_shown_once(folder):
    made = processes.create_process(
        folder=folder, name="Book", webhook_url="https://hooks.example.com/x"
    )
    assert made.signing_secret.startswith("whsec_")
    Webhook(made.signing_secret)  # a secret the library takes
    row = Process.objects.get()
    assert made.signing_secret not in row.ciphertext and row.key_id
    assert processes.signing_secret(row) == made.signing_secret
    # Bound to its row: copied to another process, it does not open.
    other = processes.create_process(folder=folder, name="Other", job_queue=True)
    assert other.signing_secret is None
    other.process.ciphertext = row.ciphertext
    with pytest.raises(vault.VaultError):
        processes.signing_secret(other.process)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Book"}, "name"),  # taken
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"webhook_url": "", "job_queue": False}, "webhook_url"),
    ],
)
def test_a_bad_process_is_refused_by_field(folder, process, options, field):
    values = {"name": "New", "webhook_url": "https://hooks.example.com/n", **options}
    with pytest.raises(ValidationError) as refused:
        processes.create_process(folder=folder, **values)
    assert field in refused.value.message_dict
    assert Process.objects.count() == 1


def test_a_required_connection_must_be_of_the_folder_and_connector(folder):
    elsewhere = ConnectionFactory(sandbox=True)
    with pytest.raises(ValidationError) as refused:
        processes.create_process(
            folder=folder, name="P", job_queue=True, requirements={"sandbox": elsewhere}
        )
    assert "requirements" in refused.value.message_dict and not Process.objects.exists()
    mine = ConnectionFactory(folder=folder, sandbox=True)
    made = processes.create_process(
        folder=folder, name="P", job_queue=True, requirements={"sandbox": mine}
    )
    assert [(r.connector_key, r.connection) for r in made.process.requirements.all()] == [
        ("sandbox", mine)
    ]


def test_missing_scopes_are_refused_by_name(folder, process):
    connection = oauth_connection(folder, "profile")
    with pytest.raises(configure.MissingScopes) as refused:
        configure.create_trigger(
            connection=connection, event_key="record_created", filters={}, process=process
        )
    assert refused.value.scopes == ["records.read"]
    assert "was not granted records.read" in refused.value.messages[0]
    assert "reconnect" in refused.value.messages[0]
    assert not Trigger.objects.exists()
    granted = oauth_connection(folder, "profile records.read")
    trigger = configure.create_trigger(
        connection=granted, event_key="record_created", filters={}, process=process
    )
    assert trigger.next_poll_at is not None and trigger.cursor == ""


def test_an_unknown_event_bad_filters_or_another_folders_process_are_refused(folder, process):
    connection = ConnectionFactory(folder=folder, sandbox=True, sealed=True)
    cases = [
        ({"event_key": "record_deleted"}, "event_key"),
        ({"filters": {"title_contains": "x" * 201}}, "title_contains"),
        (
            {
                "process": processes.create_process(
                    folder=FolderFactory(), name="X", job_queue=True
                ).process
            },
            "process",
        ),
    ]
    for change, field in cases:
        values = {"event_key": "record_created", "filters": {}, "process": process, **change}
        with pytest.raises(ValidationError) as refused:
            configure.create_trigger(connection=connection, **values)
        assert field in refused.value.message_dict
    assert not Trigger.objects.exists()


def test_disable_enable_edit_and_delete(folder, process):
    connection = ConnectionFactory(folder=folder, sandbox=True, sealed=True)
    trigger = configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )
    trigger.cursor = '{"v":1}'
    trigger.save()
    configure.disable_trigger(trigger)
    assert not trigger.enabled and trigger.next_poll_at is None
    configure.enable_trigger(trigger)
    assert trigger.enabled and trigger.next_poll_at is not None
    assert trigger.cursor == '{"v":1}'  # goes on from where it stopped
    configure.edit_trigger(trigger, filters={"title_contains": "Invoice"})
    trigger.refresh_from_db()
    assert trigger.filters == {"title_contains": "Invoice"} and trigger.cursor == ""
    configure.delete_trigger(trigger)
    assert not Trigger.objects.exists()
