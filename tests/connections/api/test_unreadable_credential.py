"""A credential that cannot be opened (its key removed, a byte altered, or
copied from another connection) is refused in the API's JSON shape, not a
server error, and the connection is marked Misconfigured once."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from connections import vault
from connections.models import Connection, ConnectionEvent, ConnectionState
from portal.models import AuditRecord
from tests.connections.api.helpers import API, body, make_connection
from tests.connections.broken_credentials import (
    KINDS,
    MESSAGE,
    OLD_KEY,
    assert_logged_without_bytes,
    break_credential,
)
from tests.connections.fake_provider import GOOD_TOKEN

DETAIL = (
    "The stored secret of Robot cannot be read: someone who may edit it must re-enter it, "
    "or an operator must restore the encryption key it was sealed with."
)


@pytest.fixture
def api(dev, api_for):
    client = api_for(dev)
    # A server error answers as a browser would see it, instead of raising here.
    client.client.raise_request_exception = False
    return client


def _misconfigured_once(connection: Connection) -> None:
    connection.refresh_from_db()
    assert connection.state == ConnectionState.MISCONFIGURED
    assert connection.last_error == MESSAGE
    events = connection.events.filter(kind=ConnectionEvent.Kind.REFRESH_FAILED)
    assert list(events.values_list("detail", flat=True)) == [MESSAGE]


@pytest.mark.parametrize("how", KINDS)
def test_credentials_by_id_and_by_name_answer_409_json(
    how, dev, api, tree, fakehub, settings, caplog
):
    robot = make_connection(tree["finance"])
    ciphertext = break_credential(robot, how, settings, {"token": GOOD_TOKEN})
    caplog.set_level(logging.INFO)
    for response in (
        api.get(f"{API}/connections/{robot.pk}/credentials"),
        api.get(
            f"{API}/credentials",
            {"folder": "Shared/Finance", "connector": "fakehub", "name": "Robot"},
        ),
        api.get(f"{API}/credentials", {"id": robot.pk}),
    ):
        assert response.status_code == 409, response.content[:300]
        assert body(response) == {"detail": DETAIL}
        assert GOOD_TOKEN not in response.content.decode()
    _misconfigured_once(robot)
    # Nothing was handed out, so no read is audited.
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.CREDENTIALS_READ).exists()
    assert_logged_without_bytes(caplog.records, robot, ciphertext)
    if how == "key_removed":
        assert vault.key_id_of(ciphertext) in caplog.text
    # Re-entering the secret makes it usable again.
    vault.store_secret(robot, {"token": GOOD_TOKEN})
    Connection.objects.filter(pk=robot.pk).update(state=ConnectionState.CONNECTED)
    assert api.get(f"{API}/connections/{robot.pk}/credentials").status_code == 200


@pytest.mark.parametrize("how", KINDS)
def test_an_oauth_token_due_for_refresh_answers_409_json(
    how, dev, api, tree, settings, caplog, token_requests
):
    """The refresh path opens the credential too (connections/refresh.py)."""
    settings.PORTAL_SANDBOX_ENABLED = True
    robot = make_connection(
        tree["finance"],
        connector="sandbox",
        auth_type="oauth2_authorization_code",
        secret={"access_token": "sbx_at_unused_0001", "refresh_token": "sbx_rt_unused_0001"},
        token_expires_at=timezone.now() - timedelta(minutes=1),
    )
    ciphertext = break_credential(
        robot,
        how,
        settings,
        {"access_token": "sbx_at_broken_0002", "refresh_token": "sbx_rt_broken_0002"},
    )
    caplog.set_level(logging.INFO)
    response = api.get(f"{API}/connections/{robot.pk}/credentials")
    assert response.status_code == 409, response.content[:300]
    assert body(response) == {"detail": DETAIL}
    _misconfigured_once(robot)
    assert token_requests == []  # nothing was sent to the provider
    # The refresh lease was handed back.
    assert Connection.objects.get(pk=robot.pk).refresh_lease_owner == ""
    assert_logged_without_bytes(caplog.records, robot, ciphertext)


@pytest.mark.parametrize("how", KINDS)
def test_the_check_endpoint_records_a_failed_check(how, dev, api, tree, fakehub, settings):
    robot = make_connection(tree["finance"])
    break_credential(robot, how, settings, {"token": GOOD_TOKEN})
    response = api.post(f"{API}/connections/{robot.pk}/check")
    assert response.status_code == 200, response.content[:300]
    answer = body(response)
    assert answer["ok"] is False
    assert answer["error"] == MESSAGE
    assert answer["state"] == ConnectionState.MISCONFIGURED
    _misconfigured_once(robot)
    assert robot.health_checks.get().error == MESSAGE


def test_an_old_key_put_back_opens_it_again(dev, api, tree, fakehub, settings):
    robot = make_connection(tree["finance"])
    break_credential(robot, "key_removed", settings, {"token": GOOD_TOKEN})
    assert api.get(f"{API}/connections/{robot.pk}/credentials").status_code == 409
    settings.PORTAL_ENCRYPTION_KEYS = [*settings.PORTAL_ENCRYPTION_KEYS, OLD_KEY]
    response = api.get(f"{API}/connections/{robot.pk}/credentials")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["secret"] == {"token": GOOD_TOKEN}


def test_another_call_that_meets_an_unreadable_secret_answers_json(
    dev, api, tree, fakehub, settings, caplog
):
    """Changing a connection's fields checks them with the stored secret:
    unreadable, the API still answers in its JSON shape, changes nothing but
    marks the connection, as the credentials read does."""
    robot = make_connection(tree["finance"], auth_type="basic", fields={"email": "a@example.com"})
    ciphertext = break_credential(robot, "altered", settings, {"api_token": "basic-secret-0001"})
    response = api.patch(f"{API}/connections/{robot.pk}", {"fields": {"email": "b@example.com"}})
    assert response.status_code == 409, response.content[:300]
    assert body(response) == {"detail": DETAIL}
    robot.refresh_from_db()
    assert robot.fields == {"email": "a@example.com"}
    assert robot.state == ConnectionState.MISCONFIGURED
    assert ciphertext not in caplog.text
