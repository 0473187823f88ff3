"""Check now with a credential that cannot be opened (its key removed, a
byte altered, or copied from another connection): a failed check is
recorded, the connection is Misconfigured and its page says why; nothing
crashes and no log line holds the ciphertext."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from connections.actions import check
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from connections.tasks import check_connection_task, refresh_connection_task
from tests.connections.broken_credentials import (
    KINDS,
    MESSAGE,
    assert_logged_without_bytes,
    break_credential,
)
from tests.connections.fake_provider import GOOD_TOKEN
from tests.factories import ConnectionFactory, assign


@pytest.fixture
def developer(make_user, tree):
    user = make_user("dev", email="dev@example.com")
    assign(user, tree["finance"], "Automation Developer")
    return user


def _connection(folder, developer) -> Connection:
    return ConnectionFactory(
        folder=folder,
        connector_key="fakehub",
        name="Robot",
        auth_type="pat",
        authenticated_by=developer,
    )


def _recorded(connection: Connection) -> None:
    connection.refresh_from_db()
    assert connection.state == ConnectionState.MISCONFIGURED
    assert connection.last_error == MESSAGE
    check = HealthCheck.objects.get(connection=connection)
    assert not check.ok and check.error == MESSAGE
    assert connection.events.filter(kind=ConnectionEvent.Kind.CHECKED).get().detail == MESSAGE
    # Marked once, through the refresh module's mark_broken.
    assert list(
        connection.events.filter(kind=ConnectionEvent.Kind.REFRESH_FAILED).values_list(
            "detail", flat=True
        )
    ) == [MESSAGE]


@pytest.mark.parametrize("how", KINDS)
def test_check_connection_records_a_failed_check(
    how, tree, developer, fakehub, provider, settings, caplog, django_capture_on_commit_callbacks
):
    robot = _connection(tree["finance"], developer)
    ciphertext = break_credential(robot, how, settings, {"token": GOOD_TOKEN})
    caplog.set_level(logging.INFO)
    with django_capture_on_commit_callbacks(execute=True):
        result = check.check_connection(connection=robot, actor=developer)
    assert not result.ok
    assert result.error == MESSAGE
    _recorded(robot)
    assert provider.requests == []  # nothing was sent without a credential
    assert_logged_without_bytes(caplog.records, robot, ciphertext)
    # The people responsible heard once; a second check tells nobody again.
    assert len(mail.outbox) == 1 and "misconfigured" in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        check.check_connection(connection=robot, actor=developer)
    assert len(mail.outbox) == 1
    assert robot.health_checks.count() == 2


@pytest.mark.parametrize("how", KINDS)
def test_check_now_on_the_page_records_it_and_the_page_says_why(
    how,
    client,
    tree,
    developer,
    fakehub,
    settings,
    caplog,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    robot = _connection(tree["finance"], developer)
    ciphertext = break_credential(robot, how, settings, {"token": GOOD_TOKEN})
    # The queued check runs here, as a worker runs it.
    monkeypatch.setattr(check_connection_task, "delay", check_connection_task.run)
    caplog.set_level(logging.INFO)
    client.force_login(developer)
    args = [tree["finance"].pk, robot.pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("connection_check", args=args))
    assert response.status_code == 302
    _recorded(robot)
    assert_logged_without_bytes(caplog.records, robot, ciphertext)
    page = client.get(reverse("connection_detail", args=args))
    assert page.status_code == 200
    assert f"Misconfigured: {MESSAGE}" in page.content.decode()


@pytest.mark.parametrize("how", KINDS)
def test_the_refresh_task_marks_it_and_ends_its_chain(how, tree, settings, caplog):
    """The refresh sweep's task meets an unreadable secret: the connection
    becomes Misconfigured with the reason (nothing is sent to the provider),
    no retry is scheduled and its queued mark is cleared."""
    settings.PORTAL_SANDBOX_ENABLED = True
    connection = ConnectionFactory(
        folder=tree["finance"],
        connector_key="sandbox",
        auth_type="oauth2_authorization_code",
        name="Sealed",
        token_expires_at=timezone.now() + timedelta(seconds=30),
        refresh_queued_until=timezone.now() + timedelta(minutes=3),
    )
    secret = {"access_token": "a", "refresh_token": "r"}
    ciphertext = break_credential(connection, how, settings, secret)
    with caplog.at_level(logging.INFO):
        refresh_connection_task.run(connection.pk)
    connection.refresh_from_db()
    assert connection.state == ConnectionState.MISCONFIGURED
    assert connection.last_error == MESSAGE
    assert connection.refresh_queued_until is None
    assert_logged_without_bytes(caplog.records, connection, ciphertext)


def test_changes_that_build_on_the_stored_secret_say_so_on_the_page(
    client, tree, developer, fakehub, provider, settings
):
    """New fields are checked with the stored secret, a BYOA app's new
    client secret is kept with it, a BYOA reconnect signs in with its app:
    none of them can start from a secret that cannot be read. Each page says
    why, keeps what was typed, and the connection is marked; no 500."""
    settings.PORTAL_SANDBOX_ENABLED = True
    client.force_login(developer)
    folder = tree["finance"]
    robot = ConnectionFactory(
        folder=folder,
        connector_key="fakehub",
        name="Basic",
        auth_type="basic",
        fields={"email": "robot@example.com"},
    )
    break_credential(robot, "altered", settings, {"api_token": "t"})
    edited = client.post(
        reverse("connection_edit", args=[folder.pk, robot.pk]),
        {
            "name": "Basic",
            "description": "",
            "polling_interval_seconds": robot.polling_interval_seconds,
            "field_email": "other@example.com",
        },
    )
    assert edited.status_code == 400
    assert "cannot be read" in edited.content.decode()
    assert 'value="other@example.com"' in edited.content.decode()
    robot.refresh_from_db()
    assert robot.state == ConnectionState.MISCONFIGURED and robot.fields["email"] != "other"
    assert provider.requests == []

    byoa = ConnectionFactory(
        folder=folder,
        connector_key="sandbox",
        name="Own app",
        auth_type="oauth2_authorization_code",
        own_app=True,
    )
    break_credential(byoa, "copied", settings, {"client_id": "app", "client_secret": "s"})
    args = [folder.pk, byoa.pk]
    replaced = client.post(
        reverse("connection_replace_client_secret", args=args), {"client_secret": "new"}
    )
    assert replaced.status_code == 400
    assert "cannot be read" in replaced.content.decode()
    reconnect = client.post(reverse("connection_reconnect", args=args), follow=True)
    assert reconnect.redirect_chain[-1][0] == reverse("connection_detail", args=args)
    assert "cannot be read" in reconnect.content.decode()
    byoa.refresh_from_db()
    assert byoa.state == ConnectionState.MISCONFIGURED
