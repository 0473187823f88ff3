"""No lost updates and no server error on a race. An edit or a new secret
released together with a slow token refresh: each write saves only the
fields it owns, and whatever writes the sealed credential holds the refresh
lease, so the connection stays Connected with the newest token set (and
the new client secret). Creates of one name at once: one wins, the others
are told the name is taken, as they would be one after the other.

Real threads with their own database connections: PostgreSQL (CI)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from connections import oauth, refresh, vault
from connections.actions import create, credentials, details
from connections.models import Connection, ConnectionState
from tests.at_once import at_once, needs_a_server_database, together
from tests.connections.fake_provider import GOOD_TOKEN
from tests.factories import ConnectionFactory, FolderFactory

pytestmark = pytest.mark.django_db(transaction=True)

REFRESH_SECONDS = 0.6


def _due_oauth_connection(*, own_app: bool = False) -> Connection:
    secret = {"access_token": "old-access", "refresh_token": "old-refresh", "token_type": "Bearer"}
    if own_app:
        secret.update(client_id="their-app", client_secret="old-client-secret")
    return ConnectionFactory(
        sandbox=True,
        auth_type="oauth2_authorization_code",
        name="Busy",
        own_app=own_app,
        token_expires_at=timezone.now() + timedelta(seconds=30),
        secret=secret,
    )


@pytest.fixture(autouse=True)
def sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def slow_refresh(monkeypatch):
    """The token endpoint answers after REFRESH_SECONDS with a rotated token
    set built on the credential it was given (a BYOA connection's client
    secret comes along, as oauth.request_refresh keeps it)."""

    def request_refresh(connection, secret):
        time.sleep(REFRESH_SECONDS)
        return {
            **secret,
            "access_token": "new-access",
            "refresh_token": "new-refresh",
            "expires_at": int(time.time()) + 3600,
        }

    monkeypatch.setattr(oauth, "request_refresh", request_refresh)


def _soon(call):
    """``call`` a moment after release: while the refresh waits for its answer."""

    def later():
        time.sleep(REFRESH_SECONDS / 4)
        return call()

    return later


def _refreshed(connection: Connection) -> None:
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert refresh.is_fresh(connection)
    assert connection.refresh_lease_owner == "" and connection.refresh_lease_until is None
    stored = vault.read_secret(connection)
    assert (stored["access_token"], stored["refresh_token"]) == ("new-access", "new-refresh")
    assert connection.token_expires_at == oauth.expiry_of(stored)


def test_an_edit_during_a_slow_refresh_keeps_the_refreshed_token_set(slow_refresh):
    needs_a_server_database()
    connection = _due_oauth_connection()
    as_read = Connection.objects.get(pk=connection.pk)  # as the edit page read it

    def edit():
        return details.edit_connection(
            connection=as_read,
            name="Renamed",
            description="Busy connection",
            polling_interval_seconds=as_read.polling_interval_seconds,
            fields=as_read.fields,
            actor=None,
        )

    refreshed, changed = together(lambda: refresh.refresh_connection(connection.pk), _soon(edit))

    assert not isinstance(refreshed, Exception), refreshed
    assert changed == ["name", "description"]
    _refreshed(connection)
    assert (connection.name, connection.description) == ("Renamed", "Busy connection")
    assert connection.token_version == 1


def test_a_new_client_secret_during_a_slow_refresh_is_kept_with_the_new_tokens(slow_refresh):
    needs_a_server_database()
    connection = _due_oauth_connection(own_app=True)

    def replace():
        credentials.replace_client_secret(
            connection=Connection.objects.get(pk=connection.pk),
            client_secret="new-client-secret",
            actor=None,
        )

    refreshed, replaced = together(
        lambda: refresh.refresh_connection(connection.pk), _soon(replace)
    )

    assert not isinstance(refreshed, Exception), refreshed
    assert replaced is None
    _refreshed(connection)
    assert vault.read_secret(connection)["client_secret"] == "new-client-secret"
    assert connection.token_version == 2  # the refresh, then the new client secret


def test_a_refresh_that_read_before_a_new_client_secret_does_not_store_over_it(slow_refresh):
    """Sequentially, the same rule: the refresh read the credential, the new
    client secret was stored, then the refresh tries to take the lease on
    what it read: the version moved, so it reads again and takes the new
    credential instead of storing the old client secret back."""
    connection = _due_oauth_connection(own_app=True)
    read_first = refresh._read(connection.pk)
    credentials.replace_client_secret(
        connection=connection, client_secret="new-client-secret", actor=None
    )
    assert not refresh._take_lease(read_first, "stale-reader")
    assert refresh.refresh_connection(connection.pk)["client_secret"] == "new-client-secret"
    assert vault.read_secret(connection)["client_secret"] == "new-client-secret"


def test_replacing_a_secret_saves_only_what_it_owns(fakehub):
    """A PAT connection's new secret: the check's fields and who
    authenticated it are written, not a refresh lease or queue mark read
    before."""
    connection = create.create_secret_connection(
        folder=FolderFactory(),
        connector=fakehub,
        auth=fakehub.auth_type("pat"),
        name="Robot",
        description="",
        fields={},
        secret={"token": GOOD_TOKEN},
        created_by=None,
    )
    queued = timezone.now() + timedelta(minutes=5)
    Connection.objects.filter(pk=connection.pk).update(check_queued_until=queued)
    credentials.replace_secret(connection=connection, secret={"token": GOOD_TOKEN}, actor=None)
    connection.refresh_from_db()
    assert connection.check_queued_until == queued
    assert connection.state == ConnectionState.CONNECTED


def test_creates_of_one_name_at_once_one_wins_the_others_are_told(fakehub, monkeypatch):
    needs_a_server_database()
    folder = FolderFactory()
    check = create.run_check

    def slow_check(*args, **kwargs):
        # Every create has found the name free before any of them saves.
        time.sleep(0.3)
        return check(*args, **kwargs)

    monkeypatch.setattr(create, "run_check", slow_check)

    def create_twin():
        return create.create_secret_connection(
            folder=folder,
            connector=fakehub,
            auth=fakehub.auth_type("pat"),
            name="Twin",
            description="",
            fields={},
            secret={"token": GOOD_TOKEN},
            created_by=None,
        )

    made, raised = at_once(create_twin, 4)

    assert len(made) == 1
    assert [type(error) for error in raised] == [ValidationError] * 3, raised
    taken = {"name": [f"A connection named 'Twin' already exists in {folder.name}."]}
    assert all(error.message_dict == taken for error in raised)
    assert Connection.objects.filter(folder=folder).count() == 1
