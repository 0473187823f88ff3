"""PAT, API-key and basic connections through the wizard, against a provider
answering over real HTTP."""

import pytest
from django.urls import reverse

from connections import vault
from connections.models import Connection, ConnectionEvent, ConnectionState
from connections.tasks import check_connection_task
from tests.connections.fake_provider import GOOD_API_KEY, GOOD_BASIC, GOOD_TOKEN, WEAK_TOKEN
from tests.factories import assign


@pytest.fixture
def developer(make_user, tree):
    user = make_user("dev")
    assign(user, tree["finance"], "Automation Developer")
    return user


@pytest.fixture
def check_now(client, monkeypatch, django_capture_on_commit_callbacks):
    """Check now, with the queued check run here as a worker would run it."""
    monkeypatch.setattr(check_connection_task, "delay", check_connection_task.run)

    def post(args):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(reverse("connection_check", args=args))

    return post


def _connect(client, folder, auth_type, data):
    url = reverse("connection_add_details", args=[folder.pk, "fakehub", auth_type])
    return client.post(url, data)


def test_pat_success(client, developer, tree, fakehub, provider):
    client.force_login(developer)
    response = _connect(
        client, tree["finance"], "pat", {"name": "Robot", "secret_token": GOOD_TOKEN}
    )
    assert response.status_code == 302
    connection = Connection.objects.get(name="Robot")
    assert connection.state == ConnectionState.CONNECTED
    assert connection.account_identity == "octo-robot"
    assert connection.authenticated_by == developer
    assert vault.read_secret(connection) == {"token": GOOD_TOKEN}
    assert provider.requests[-1][1]["Authorization"] == f"Bearer {GOOD_TOKEN}"
    kinds = set(connection.events.values_list("kind", flat=True))
    assert kinds == {ConnectionEvent.Kind.CREATED, ConnectionEvent.Kind.CHECKED}
    page = client.get(response.url).content.decode()
    assert "octo-robot" in page and GOOD_TOKEN not in page


def test_api_key_and_basic_success(client, developer, tree, fakehub, provider):
    client.force_login(developer)
    response = _connect(
        client, tree["finance"], "api_key", {"name": "Key", "secret_api_key": GOOD_API_KEY}
    )
    assert response.status_code == 302
    assert provider.requests[-1][1]["X-API-Key"] == GOOD_API_KEY
    response = _connect(
        client,
        tree["finance"],
        "basic",
        {"name": "Basic", "field_email": GOOD_BASIC[0], "secret_api_token": GOOD_BASIC[1]},
    )
    assert response.status_code == 302
    basic = Connection.objects.get(name="Basic")
    assert basic.fields == {"email": GOOD_BASIC[0]}
    assert basic.account_identity == GOOD_BASIC[0]


def test_wrong_secret_keeps_input_but_not_secret(client, developer, tree, fakehub):
    client.force_login(developer)
    wrong = "ghp_wrong_token_that_must_not_echo"
    response = _connect(
        client,
        tree["finance"],
        "pat",
        {"name": "Robot", "description": "Nightly sync", "secret_token": wrong},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "refused the credentials (401 Unauthorized)" in page
    assert "Nightly sync" in page and 'value="Robot"' in page
    assert wrong not in page  # neither in the form nor in the provider's echoed message
    assert "••••" in page
    assert not Connection.objects.exists()


def test_missing_permission_is_explained(client, developer, tree, fakehub):
    client.force_login(developer)
    response = _connect(client, tree["finance"], "pat", {"name": "R", "secret_token": WEAK_TOKEN})
    assert response.status_code == 400
    assert "lack permission" in response.content.decode()
    assert not Connection.objects.exists()


def test_unreachable_host(client, developer, tree, fakehub, provider):
    provider.server.shutdown()
    provider.server.server_close()
    client.force_login(developer)
    response = _connect(client, tree["finance"], "pat", {"name": "R", "secret_token": GOOD_TOKEN})
    assert response.status_code == 400
    assert "Could not reach localhost" in response.content.decode()
    assert not Connection.objects.exists()


def test_bad_input_changes_nothing(client, developer, tree, fakehub, provider):
    client.force_login(developer)
    response = _connect(
        client, tree["finance"], "basic", {"name": "", "field_email": "not-an-email"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "E-mail must be an e-mail address." in page
    assert "Give the connection a name." in page
    assert provider.requests == []
    assert not Connection.objects.exists()


def test_duplicate_name_refused(client, developer, tree, fakehub):
    client.force_login(developer)
    _connect(client, tree["finance"], "pat", {"name": "Robot", "secret_token": GOOD_TOKEN})
    response = _connect(
        client, tree["finance"], "pat", {"name": "robot", "secret_token": GOOD_TOKEN}
    )
    assert response.status_code == 400
    assert "already exists in Finance" in response.content.decode()
    assert Connection.objects.count() == 1


def test_check_edit_replace_disable_delete(client, developer, tree, fakehub, provider, check_now):
    client.force_login(developer)
    _connect(client, tree["finance"], "pat", {"name": "Robot", "secret_token": GOOD_TOKEN})
    connection = Connection.objects.get()
    args = [tree["finance"].pk, connection.pk]

    check_now(args)
    assert connection.health_checks.count() == 2

    response = client.post(
        reverse("connection_edit", args=args),
        {"name": "Robot 2", "description": "d", "polling_interval_seconds": "600"},
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert (connection.name, connection.polling_interval_seconds) == ("Robot 2", 600)

    response = client.post(
        reverse("connection_replace_secret", args=args), {"secret_token": "wrong-one"}
    )
    assert response.status_code == 400
    assert vault.read_secret(connection) == {"token": GOOD_TOKEN}
    response = client.post(
        reverse("connection_replace_secret", args=args), {"secret_token": GOOD_TOKEN}
    )
    assert response.status_code == 302
    assert connection.events.filter(kind="secret_replaced").count() == 1

    client.post(reverse("connection_set_enabled", args=args), {"enabled": "0"})
    connection.refresh_from_db()
    assert not connection.is_enabled
    before = len(provider.requests)
    check_now(args)
    assert len(provider.requests) == before  # a disabled connection is never used

    confirm = client.get(reverse("connection_delete", args=args)).content.decode()
    assert "will stop working" in confirm
    client.post(reverse("connection_delete", args=args))
    assert not Connection.objects.exists()


def test_check_now_records_failure_state(client, developer, tree, fakehub, provider, check_now):
    client.force_login(developer)
    _connect(client, tree["finance"], "pat", {"name": "Robot", "secret_token": GOOD_TOKEN})
    connection = Connection.objects.get()
    vault.store_secret(connection, {"token": "revoked-token"})
    check_now([tree["finance"].pk, connection.pk])
    connection.refresh_from_db()
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    assert connection.consecutive_failures == 1
    assert "401" in connection.last_error
