"""Working credentials: what a client needs to call the provider, for each
kind of connection; none for a connection that cannot be used as it is; an
OAuth 2.0 access token straight from the vault while it is valid."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from connections import vault
from connections.models import Connection, ConnectionState
from portal.models import AuditRecord
from tests.connections.api.helpers import API, make_connection
from tests.connections.fake_provider import GOOD_API_KEY, GOOD_BASIC, GOOD_TOKEN
from tests.factories import assign


def _credentials(api, connection):
    return api.get(f"{API}/connections/{connection.pk}/credentials")


def test_pat(dev, api_for, tree, provider, fakehub):
    robot = make_connection(tree["finance"], secret={"token": GOOD_TOKEN})
    response = _credentials(api_for(dev), robot)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "connection_id": robot.pk,
        "connector": "fakehub",
        "type": "pat",
        "secret": {"token": GOOD_TOKEN},
        "expires_at": None,
        "api_base_url": provider.url,
        "instance_url": None,
        "headers": {"Authorization": f"Bearer {GOOD_TOKEN}"},
        "query": {},
        "fields": {},
    }


def test_api_key_and_basic(dev, api_for, tree, fakehub):
    api = api_for(dev)
    keyed = make_connection(
        tree["finance"], "Keyed", auth_type="api_key", secret={"api_key": GOOD_API_KEY}
    )
    answer = _credentials(api, keyed).json()
    assert answer["type"] == "api_key" and answer["headers"] == {"X-API-Key": GOOD_API_KEY}
    email, api_token = GOOD_BASIC
    expires = timezone.now() + timedelta(days=30)
    basic = make_connection(
        tree["finance"],
        "Basic",
        auth_type="basic",
        fields={"email": email},
        secret={"api_token": api_token},
        secret_expires_at=expires,
    )
    answer = _credentials(api, basic).json()
    expected = base64.b64encode(f"{email}:{api_token}".encode()).decode()
    assert answer["type"] == "basic" and answer["headers"] == {"Authorization": f"Basic {expected}"}
    assert answer["fields"] == {"email": email}
    # In JSON to the millisecond.
    assert abs(datetime.fromisoformat(answer["expires_at"]) - expires) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"is_enabled": False}, "Robot is disabled: enable it to use it."),
        (
            {"state": ConnectionState.NEEDS_RECONNECT},
            "Robot needs reconnecting: someone who may edit it must reconnect it on its page "
            "first.",
        ),
        (
            {"state": ConnectionState.NOT_CONNECTED},
            "Robot is not connected yet: someone who may edit it must connect it on its page "
            "first.",
        ),
    ],
    ids=["disabled", "needs-reconnect", "not-connected"],
)
def test_a_connection_that_cannot_be_used_answers_409(dev, api_for, tree, fakehub, changes, detail):
    robot = make_connection(tree["finance"], **changes)
    api = api_for(dev)
    for response in (
        _credentials(api, robot),
        api.get(f"{API}/credentials", {"folder": "Shared/Finance", "connector": "fakehub"}),
    ):
        assert response.status_code == 409
        assert response.json() == {"detail": detail}
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.CREDENTIALS_READ).exists()


# --- OAuth 2.0, against the Sandbox authorization server -------------------


@pytest.mark.django_db(transaction=True)
def test_oauth_token_is_handed_out_without_a_token_request(
    tree, make_user, api_for, sandbox_oauth, token_requests
):
    from connections.oauth_apps import portal_app
    from connections.sandbox_provider import SANDBOX_CLIENT_ID

    dev = make_user("dev")
    assign(dev, tree["finance"], "Automation Developer")
    api = api_for(dev)
    create = f"{API}/folders/{tree['finance'].pk}/connections"
    data = {"connector": "sandbox", "auth_type": "oauth2_client_credentials", "name": "Service"}

    # The provider refuses the app's credentials: nothing is stored.
    wrong = {"client_id": SANDBOX_CLIENT_ID, "client_secret": "not-the-client-secret"}
    refused = api.post(create, {**data, "secret": wrong})
    assert refused.status_code == 422, refused.content
    assert refused.json()["detail"]
    assert not Connection.objects.exists()
    missing = api.post(create, {**data, "secret": {"client_id": SANDBOX_CLIENT_ID}})
    assert missing.status_code == 422
    assert missing.json()["errors"] == {"client_secret": ["Client Secret is required."]}

    secret = {"client_id": SANDBOX_CLIENT_ID, "client_secret": portal_app("sandbox").client_secret}
    created = api.post(create, {**data, "secret": secret})
    assert created.status_code == 201, created.content
    assert created.json()["auth_type"] == "oauth2_client_credentials"
    assert created.json()["state"] == ConnectionState.CONNECTED
    assert token_requests == ["client_credentials", "client_credentials"]
    connection = Connection.objects.get()
    stored = vault.read_secret(connection)

    # A valid token: straight from the vault, no token request.
    for _ in range(2):
        response = _credentials(api, connection)
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["type"] == "oauth2_access_token"
        assert answer["secret"] == {"access_token": stored["access_token"], "token_type": "Bearer"}
        assert answer["headers"] == {"Authorization": f"Bearer {stored['access_token']}"}
        assert answer["api_base_url"] == f"{sandbox_oauth.url}/sandbox/api"
        expires_at = datetime.fromtimestamp(stored["expires_at"], tz=UTC)
        assert datetime.fromisoformat(answer["expires_at"]) == expires_at
        assert "client_secret" not in answer["secret"]
    assert token_requests == ["client_credentials", "client_credentials"]

    # About to expire: renewed first (so the count above would have seen a request).
    Connection.objects.filter(pk=connection.pk).update(
        token_expires_at=timezone.now() + timedelta(seconds=5)
    )
    renewed = _credentials(api, connection).json()
    assert token_requests == ["client_credentials"] * 3
    assert renewed["secret"]["access_token"] == vault.read_secret(connection)["access_token"]
    assert renewed["secret"]["access_token"] != stored["access_token"]
    assert AuditRecord.objects.filter(action=AuditRecord.Action.CREDENTIALS_READ).count() == 3


@pytest.mark.django_db(transaction=True)
def test_password_grant_through_the_api_keeps_no_password(
    tree, make_user, api_for, sandbox_oauth, token_requests
):
    """The password grant needs no browser: the API makes the connection with
    the portal's registered app, and the password is used once, never kept."""
    from tests.factories import PASSWORD

    dev = make_user("dev")
    assign(dev, tree["finance"], "Automation Developer")
    make_user("ada")
    api = api_for(dev)
    create = f"{API}/folders/{tree['finance'].pk}/connections"
    data = {"connector": "sandbox", "auth_type": "oauth2_password", "name": "As Ada"}

    missing = api.post(create, {**data, "secret": {"username": "ada"}})
    assert missing.status_code == 422
    assert missing.json()["errors"] == {"password": ["Password is required."]}
    wrong = api.post(create, {**data, "secret": {"username": "ada", "password": "not-it-at-all"}})
    assert wrong.status_code == 422, wrong.content
    assert not Connection.objects.exists()

    created = api.post(create, {**data, "secret": {"username": "ada", "password": PASSWORD}})
    assert created.status_code == 201, created.content
    assert created.json()["account_identity"] == "ada"
    connection = Connection.objects.get()
    assert PASSWORD not in str(vault.read_secret(connection))
    assert token_requests == ["password", "password"]
    answer = _credentials(api, connection).json()
    assert answer["type"] == "oauth2_access_token"
    assert "refresh_token" not in answer["secret"]


@pytest.mark.parametrize("granted_how", ["user", "group"])
def test_a_read_is_three_queries(granted_how, make_user, api_for, tree, fakehub):
    """The key with its account; the connection with its folder, credential
    and the caller's grants on the folder (a role on an ancestor, given to
    the user or to one of their groups); then the audit record."""
    from django.contrib.auth.models import Group
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    user = make_user("runner")
    if granted_how == "user":
        assign(user, tree["shared"], "Automation User")
    else:
        group = Group.objects.create(name="Runners")
        user.groups.add(group)
        assign(group, tree["shared"], "Automation User")
    robot = make_connection(tree["payables"], secret={"token": GOOD_TOKEN})
    api = api_for(user)
    assert _credentials(api, robot).status_code == 200  # warm: permission names read once
    with CaptureQueriesContext(db) as queries:
        response = _credentials(api, robot)
    assert response.status_code == 200
    assert len(queries) == 3, [q["sql"] for q in queries]
