"""Writes through the API: create, edit, replace the secret, check, disable
and enable, delete. The same validation and refusals as the pages (the same
input posted to the page and to the API says the same thing), and nothing
stored or changed when refused."""

from __future__ import annotations

import time
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from connections import vault
from connections.actions import create
from connections.catalog import get_catalog
from connections.models import (
    Connection,
    ConnectionEvent,
    ConnectionState,
    Credential,
    HealthCheck,
)
from portal.models import TenantSettings
from tests.at_once import at_once, needs_a_server_database, together
from tests.connections.api.helpers import API, ORIGINAL_TOKEN, make_connection, snapshot
from tests.connections.fake_provider import GOOD_BASIC, GOOD_TOKEN, WEAK_TOKEN

WRONG_TOKEN = "ghp_wrong_token_value_5555555555"
REFUSED_PAT = (
    "FakeHub refused the credentials (401 Unauthorized): the personal access token is wrong, "
    'expired or revoked. The provider said: "Bad credentials: •••• is invalid"'
)


@pytest.fixture
def signed_in(client, dev):
    client.force_login(dev)
    return client


def page_says(response, message: str) -> bool:
    assert response.status_code == 400, response.status_code  # the form again, with errors
    return message in unescape(response.content.decode())


def _create_url(tree) -> str:
    return f"{API}/folders/{tree['finance'].pk}/connections"


def _wizard_url(tree, auth_type: str) -> str:
    return reverse("connection_add_details", args=[tree["finance"].pk, "fakehub", auth_type])


def _nothing_stored(before: dict, tree):
    assert snapshot(tree["finance"]) == before
    assert Credential.objects.count() == len(before["connections"])


# --- Create ---------------------------------------------------------------


def test_create(api, dev, tree, fakehub):
    response = api.post(
        _create_url(tree),
        {
            "connector": "fakehub",
            "auth_type": "pat",
            "name": " Robot ",
            "description": "Builds things",
            "secret": {"token": f" {GOOD_TOKEN} "},
        },
    )
    assert response.status_code == 201, response.content
    assert GOOD_TOKEN not in response.content.decode()
    answer = response.json()
    connection = Connection.objects.get()
    assert answer["id"] == connection.pk and answer["folder_id"] == tree["finance"].pk
    assert answer["name"] == connection.name == "Robot"
    assert answer["state"] == ConnectionState.CONNECTED and answer["state_label"] == "Connected"
    assert answer["account_identity"] == "octo-robot" and answer["authenticated_by"] == "dev"
    assert answer["is_enabled"] and not answer["is_default"]
    assert vault.read_secret(connection) == {"token": GOOD_TOKEN}
    assert connection.created_by == dev
    assert ConnectionEvent.objects.filter(
        connection=connection, kind=ConnectionEvent.Kind.CREATED, actor=dev
    ).exists()
    assert HealthCheck.objects.get(connection=connection).ok


def test_create_basic_with_fields(api, tree, fakehub):
    email, api_token = GOOD_BASIC
    response = api.post(
        _create_url(tree),
        {
            "connector": "fakehub",
            "auth_type": "basic",
            "name": "Mail robot",
            "fields": {"email": email},
            "secret": {"api_token": api_token},
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["fields"] == {"email": email}
    connection = Connection.objects.get()
    assert vault.read_secret(connection) == {"api_token": api_token}


# (id, auth type, request data, field of the error, message, page form data)
CREATE_REFUSALS = [
    (
        "duplicate-name",
        "pat",
        {"name": "robot", "secret": {"token": GOOD_TOKEN}},
        "name",
        "A connection named 'robot' already exists in Finance.",
        {"name": "robot", "secret_token": GOOD_TOKEN},
    ),
    (
        "bad-field",
        "basic",
        {"name": "Mail", "fields": {"email": "not-an-address"}, "secret": {"api_token": "t" * 12}},
        "email",
        "E-mail must be an e-mail address.",
        {"name": "Mail", "field_email": "not-an-address", "secret_api_token": "t" * 12},
    ),
    (
        "provider-refuses",
        "pat",
        {"name": "New", "secret": {"token": WRONG_TOKEN}},
        None,
        REFUSED_PAT,
        {"name": "New", "secret_token": WRONG_TOKEN},
    ),
    (
        "lacks-permission",
        "pat",
        {"name": "New", "secret": {"token": WEAK_TOKEN}},
        None,
        "FakeHub accepted the credentials but they lack permission for this check "
        '(403 Forbidden): grant the missing scope or role. The provider said: "Resource not '
        'accessible by token"',
        {"name": "New", "secret_token": WEAK_TOKEN},
    ),
]


@pytest.mark.parametrize(
    ("auth_type", "data", "field", "message", "form"),
    [case[1:] for case in CREATE_REFUSALS],
    ids=[case[0] for case in CREATE_REFUSALS],
)
def test_create_refused_like_the_page(
    api, signed_in, tree, fakehub, auth_type, data, field, message, form
):
    make_connection(tree["finance"])
    before = snapshot(tree["finance"])
    response = api.post(_create_url(tree), {"connector": "fakehub", "auth_type": auth_type, **data})
    assert response.status_code == 422, response.content
    answer = response.json()
    assert answer["detail"] == message
    if field:
        assert answer["errors"] == {field: [message]}
    _nothing_stored(before, tree)
    # The wizard page, given the same input, says the same.
    assert page_says(signed_in.post(_wizard_url(tree, auth_type), form), message)
    _nothing_stored(before, tree)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "secret": {"token": GOOD_TOKEN}}, "name", "Give the connection a name."),
        ({"name": "   ", "secret": {"token": GOOD_TOKEN}}, "name", "Give the connection a name."),
        (
            {"name": "x" * 121, "secret": {"token": GOOD_TOKEN}},
            "name",
            "The name is longer than 120 characters.",
        ),
        ({"name": "New", "secret": {}}, "token", "Personal access token is required."),
        ({"name": "New", "secret": {"token": "  "}}, "token", "Personal access token is required."),
    ],
    ids=["empty-name", "blank-name", "long-name", "no-secret", "blank-secret"],
)
def test_create_refuses_missing_values(api, tree, provider, fakehub, data, field, message):
    before = snapshot(tree["finance"])
    response = api.post(_create_url(tree), {"connector": "fakehub", "auth_type": "pat", **data})
    assert response.status_code == 422, response.content
    assert response.json() == {"detail": message, "errors": {field: [message]}}
    _nothing_stored(before, tree)
    assert provider.requests == []  # refused before anything is sent to the provider


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "secret_token": GOOD_TOKEN}, "Give the connection a name."),
        ({"name": "New", "secret_token": ""}, "Personal access token is required."),
        (
            {"name": "x" * 121, "secret_token": GOOD_TOKEN},
            "The name is longer than 120 characters.",
        ),
    ],
    ids=["empty-name", "no-secret", "long-name"],
)
def test_page_says_the_same_for_missing_values(signed_in, tree, fakehub, form, message):
    assert page_says(signed_in.post(_wizard_url(tree, "pat"), form), message)


def test_create_with_provider_down_stores_nothing(api, signed_in, tree, provider, fakehub):
    provider.fail_with = 503
    before = snapshot(tree["finance"])
    data = {
        "connector": "fakehub",
        "auth_type": "pat",
        "name": "New",
        "secret": {"token": GOOD_TOKEN},
    }
    response = api.post(_create_url(tree), data)
    assert response.status_code == 422
    message = response.json()["detail"]
    assert message.startswith("FakeHub answered 503")
    assert page_says(
        signed_in.post(_wizard_url(tree, "pat"), {"name": "New", "secret_token": GOOD_TOKEN}),
        message,
    )
    _nothing_stored(before, tree)


@pytest.mark.django_db(transaction=True)
def test_creates_of_one_name_at_once_one_wins_everywhere(api_for, dev, tree, fakehub, monkeypatch):
    """Four creates of one name at once, through the API and through the
    page: one is made, the others hear the name is taken, as they would one
    after the other (never a server error)."""
    needs_a_server_database()
    check = create.run_check

    def slow_check(*args, **kwargs):
        time.sleep(0.3)  # every create has found the name free before any saves
        return check(*args, **kwargs)

    monkeypatch.setattr(create, "run_check", slow_check)
    taken = f"A connection named 'Twin' already exists in {tree['finance'].name}."
    data = {"connector": "fakehub", "auth_type": "pat", "name": "Twin"}
    data["secret"] = {"token": GOOD_TOKEN}
    clients = [api_for(dev, name=f"runner {i}") for i in range(4)]
    made = together(*[lambda c=c: c.post(_create_url(tree), data) for c in clients])
    assert sorted(answer.status_code for answer in made) == [201, 422, 422, 422]
    assert [a.json()["detail"] for a in made if a.status_code == 422] == [taken] * 3

    def page_create():
        browser = Client()
        browser.force_login(dev)
        form = {"name": "Page twin", "secret_token": GOOD_TOKEN}
        return browser.post(_wizard_url(tree, "pat"), form)

    made, raised = at_once(page_create, 4)
    assert raised == []
    assert sorted(answer.status_code for answer in made) == [302, 400, 400, 400]
    refused = [a for a in made if a.status_code == 400]
    assert all(page_says(a, taken.replace("Twin", "Page twin")) for a in refused)
    assert Connection.objects.filter(folder=tree["finance"]).count() == 2


@pytest.mark.parametrize(
    ("connector", "auth_type", "field", "message"),
    [
        ("nope", "pat", "connector", "No connector 'nope' in the catalog."),
        (
            "fakehub",
            "oauth2_client_credentials",
            "auth_type",
            "FakeHub offers no 'oauth2_client_credentials'; use one of pat, api_key, basic.",
        ),
        ("github", "oauth2_authorization_code", "auth_type", None),
    ],
    ids=["unknown-connector", "unknown-auth-type", "browser-consent"],
)
def test_create_refuses_what_the_api_cannot_make(
    api, tree, fakehub, settings, connector, auth_type, field, message
):
    settings.PORTAL_SANDBOX_ENABLED = True
    if message is None:
        label = get_catalog().get(connector).auth_type(auth_type).display_label
        message = (
            f"{label} needs the user's consent in a browser: add this connection on the "
            "portal's pages."
        )
    before = snapshot(tree["finance"])
    response = api.post(
        _create_url(tree),
        {
            "connector": connector,
            "auth_type": auth_type,
            "name": "New",
            "secret": {"token": GOOD_TOKEN, "client_id": "a", "client_secret": "b"},
        },
    )
    assert response.status_code == 422, response.content
    assert response.json() == {"detail": message, "errors": {field: [message]}}
    _nothing_stored(before, tree)


def test_malformed_request_answers_in_the_same_shape(api, tree, fakehub):
    response = api.post(_create_url(tree), {"connector": "fakehub"})
    assert response.status_code == 422
    answer = response.json()
    assert isinstance(answer["detail"], str) and answer["detail"]
    assert set(answer["errors"]) == {"auth_type", "name"}
    robot = make_connection(tree["finance"])
    response = api.patch(f"{API}/connections/{robot.pk}", {"polling_interval_seconds": "soon"})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)
    assert list(response.json()["errors"]) == ["polling_interval_seconds"]


# --- Edit -----------------------------------------------------------------


def _edit_page(tree, connection) -> str:
    return reverse("connection_edit", args=[tree["finance"].pk, connection.pk])


def test_edit(api, dev, tree, fakehub):
    robot = make_connection(tree["finance"], description="Old")
    response = api.patch(
        f"{API}/connections/{robot.pk}",
        {"name": "Robot 2", "description": "New", "polling_interval_seconds": 900},
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["name"], answer["description"], answer["polling_interval_seconds"]) == (
        "Robot 2",
        "New",
        900,
    )
    robot.refresh_from_db()
    assert (robot.name, robot.description, robot.polling_interval_seconds) == (
        "Robot 2",
        "New",
        900,
    )
    event = ConnectionEvent.objects.get(connection=robot, kind=ConnectionEvent.Kind.EDITED)
    assert event.actor == dev
    assert event.detail == "Changed name, description, polling interval."
    # Only what is sent changes.
    assert api.patch(f"{API}/connections/{robot.pk}", {"description": "Newer"}).status_code == 200
    robot.refresh_from_db()
    assert (robot.name, robot.description, robot.polling_interval_seconds) == (
        "Robot 2",
        "Newer",
        900,
    )


def _edit_form(connection, **changes) -> dict:
    form = {
        "name": connection.name,
        "description": connection.description,
        "polling_interval_seconds": connection.polling_interval_seconds,
        **{f"field_{key}": value for key, value in connection.fields.items()},
    }
    return {**form, **changes}


def test_edit_below_the_tenant_minimum(api, signed_in, tree, fakehub):
    TenantSettings.objects.update_or_create(pk=1, defaults={"min_polling_interval_seconds": 600})
    robot = make_connection(tree["finance"], polling_interval_seconds=900)
    before = snapshot(tree["finance"])
    message = (
        "The polling interval must be at least 600 seconds (10 minutes), the tenant-wide minimum."
    )
    response = api.patch(f"{API}/connections/{robot.pk}", {"polling_interval_seconds": 120})
    assert response.status_code == 422
    assert response.json() == {"detail": message, "errors": {"polling_interval_seconds": [message]}}
    assert snapshot(tree["finance"]) == before
    page = signed_in.post(_edit_page(tree, robot), _edit_form(robot, polling_interval_seconds=120))
    assert page_says(page, message)
    assert snapshot(tree["finance"]) == before


def test_edit_name_clash(api, signed_in, tree, fakehub):
    make_connection(tree["finance"])
    other = make_connection(tree["finance"], "Other")
    before = snapshot(tree["finance"])
    message = "A connection named 'ROBOT' already exists in Finance."
    response = api.patch(f"{API}/connections/{other.pk}", {"name": "ROBOT"})
    assert response.status_code == 422
    assert response.json() == {"detail": message, "errors": {"name": [message]}}
    assert page_says(
        signed_in.post(_edit_page(tree, other), _edit_form(other, name="ROBOT")), message
    )
    assert snapshot(tree["finance"]) == before
    # Its own name in another case is no clash.
    response = api.patch(f"{API}/connections/{other.pk}", {"name": "OTHER"})
    assert response.status_code == 200 and response.json()["name"] == "OTHER"


def _basic(tree, **extra):
    email, api_token = GOOD_BASIC
    return make_connection(
        tree["finance"],
        "Mail robot",
        auth_type="basic",
        fields={"email": email},
        secret={"api_token": api_token},
        **extra,
    )


def test_edit_fields_checked_with_the_stored_secret(api, signed_in, tree, fakehub):
    mail = _basic(tree)
    # An Automation Developer holds Use too: no word of it on the page.
    assert "fields-need-use" not in signed_in.get(_edit_page(tree, mail)).content.decode()
    before = snapshot(tree["finance"])
    response = api.patch(f"{API}/connections/{mail.pk}", {"fields": {"email": "else@example.com"}})
    assert response.status_code == 422
    message = response.json()["detail"]
    assert message.startswith("The new settings were not saved: FakeHub refused the credentials")
    page = signed_in.post(_edit_page(tree, mail), _edit_form(mail, field_email="else@example.com"))
    assert page_says(page, message)
    assert snapshot(tree["finance"]) == before

    message = "E-mail must be an e-mail address."
    response = api.patch(f"{API}/connections/{mail.pk}", {"fields": {"email": "nope"}})
    assert response.status_code == 422
    assert response.json() == {"detail": message, "errors": {"email": [message]}}
    assert page_says(
        signed_in.post(_edit_page(tree, mail), _edit_form(mail, field_email="nope")), message
    )
    assert snapshot(tree["finance"]) == before


@pytest.fixture
def editor(tree, make_user):
    """A custom role on Finance: Connections - View and Edit, not Use."""
    from django.contrib.auth.models import Permission

    from portal.models import Role, RoleAssignment

    role = Role.objects.create(name="Connection editor")
    role.permissions.set(
        Permission.objects.filter(codename__in=["view_connections", "edit_connections"])
    )
    user = make_user("editor")
    RoleAssignment.objects.create(folder=tree["finance"], role=role, user=user)
    return user


def test_edit_alone_cannot_send_the_stored_secret_elsewhere(
    client, api_for, editor, tree, fakehub, provider
):
    """Changing the fields checks them with the stored credential, which goes
    where they point: without Connections - Use that is refused before any
    request leaves, on the API and on the page (which keeps what was typed);
    the name, description and interval may still change."""
    from portal.permissions import FIELDS_NEED_USE

    mail = _basic(tree)
    api = api_for(editor)
    before = snapshot(tree["finance"])
    assert api.get(f"{API}/connections/{mail.pk}/credentials").status_code == 403
    response = api.patch(f"{API}/connections/{mail.pk}", {"fields": {"email": "else@example.com"}})
    assert response.status_code == 403
    assert response.json() == {"detail": FIELDS_NEED_USE}
    client.force_login(editor)
    assert 'data-testid="fields-need-use"' in client.get(_edit_page(tree, mail)).content.decode()
    page = client.post(_edit_page(tree, mail), _edit_form(mail, field_email="else@example.com"))
    assert page.status_code == 403
    content = unescape(page.content.decode())
    assert FIELDS_NEED_USE in content and 'value="else@example.com"' in content
    assert provider.requests == []  # no check ran: the stored secret went nowhere
    assert snapshot(tree["finance"]) == before

    response = api.patch(f"{API}/connections/{mail.pk}", {"name": "Mail robot 2"})
    assert response.status_code == 200, response.content
    mail.refresh_from_db()
    assert mail.name == "Mail robot 2"


# --- Replace the secret ---------------------------------------------------


def test_replace_secret(api, dev, tree, fakehub):
    robot = make_connection(tree["finance"], state=ConnectionState.NEEDS_RECONNECT)
    response = api.put(f"{API}/connections/{robot.pk}/secret", {"secret": {"token": GOOD_TOKEN}})
    assert response.status_code == 200, response.content
    assert GOOD_TOKEN not in response.content.decode()
    answer = response.json()
    assert answer["ok"] is True and answer["status_code"] == 200 and answer["error"] == ""
    assert answer["state"] == ConnectionState.CONNECTED
    robot.refresh_from_db()
    assert vault.read_secret(robot) == {"token": GOOD_TOKEN}
    assert robot.state == ConnectionState.CONNECTED and robot.authenticated_by == dev
    assert ConnectionEvent.objects.filter(
        connection=robot, kind=ConnectionEvent.Kind.SECRET_REPLACED, actor=dev
    ).exists()


def test_replace_secret_refused_keeps_the_old(api, signed_in, tree, fakehub):
    robot = make_connection(tree["finance"])
    before = snapshot(tree["finance"])
    url = f"{API}/connections/{robot.pk}/secret"
    response = api.put(url, {"secret": {"token": WRONG_TOKEN}})
    assert response.status_code == 422
    message = response.json()["detail"]
    assert message == f"The new secret was not saved: {REFUSED_PAT}"
    assert WRONG_TOKEN not in response.content.decode()
    page = reverse("connection_replace_secret", args=[tree["finance"].pk, robot.pk])
    assert page_says(signed_in.post(page, {"secret_token": WRONG_TOKEN}), message)
    assert snapshot(tree["finance"]) == before
    assert vault.read_secret(robot) == {"token": ORIGINAL_TOKEN}

    message = "Personal access token is required."
    response = api.put(url, {"secret": {"token": " "}})
    assert response.status_code == 422
    assert response.json() == {"detail": message, "errors": {"token": [message]}}
    assert snapshot(tree["finance"]) == before


def test_replace_secret_of_an_oauth_connection_is_refused(api, tree, fakehub, settings):
    settings.PORTAL_SANDBOX_ENABLED = True
    oauth = make_connection(
        tree["finance"],
        connector="sandbox",
        auth_type="oauth2_authorization_code",
        secret={"access_token": "sandbox-access-token-1", "refresh_token": "sandbox-refresh-1"},
    )
    before = snapshot(tree["finance"])
    response = api.put(f"{API}/connections/{oauth.pk}/secret", {"secret": {"token": GOOD_TOKEN}})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "This connection signs in with OAuth 2.0: reconnect it on its page to replace its tokens."
    )
    assert snapshot(tree["finance"]) == before


# --- Check, disable, enable, delete ---------------------------------------


def test_check(api, dev, tree, provider, fakehub):
    good = make_connection(tree["finance"], "Good", secret={"token": GOOD_TOKEN})
    response = api.post(f"{API}/connections/{good.pk}/check")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["ok"] is True and answer["status_code"] == 200 and answer["error"] == ""
    assert answer["latency_ms"] is not None
    good.refresh_from_db()
    assert good.last_checked_at and good.account_identity == "octo-robot"
    assert HealthCheck.objects.get(connection=good).ok

    bad = make_connection(tree["finance"])
    response = api.post(f"{API}/connections/{bad.pk}/check")
    assert response.status_code == 200
    answer = response.json()
    assert answer["ok"] is False and answer["status_code"] == 401
    assert answer["state"] == ConnectionState.NEEDS_RECONNECT
    assert answer["state_label"] == "Needs reconnect"
    assert answer["error"] == REFUSED_PAT
    assert ORIGINAL_TOKEN not in response.content.decode()
    bad.refresh_from_db()
    assert bad.state == ConnectionState.NEEDS_RECONNECT
    assert ConnectionEvent.objects.filter(
        connection=bad, kind=ConnectionEvent.Kind.CHECKED, actor=dev
    ).exists()

    provider.fail_with = 503
    response = api.post(f"{API}/connections/{good.pk}/check")
    assert response.status_code == 200
    assert response.json()["ok"] is False and response.json()["status_code"] == 503
    assert HealthCheck.objects.filter(connection=good).count() == 2


def test_disable_and_enable(api, dev, tree, fakehub):
    robot = make_connection(tree["finance"], secret={"token": GOOD_TOKEN})
    url = f"{API}/connections/{robot.pk}"
    response = api.post(f"{url}/disable")
    assert response.status_code == 200 and response.json()["is_enabled"] is False
    robot.refresh_from_db()
    assert not robot.is_enabled and robot.next_check_at is None
    # Disabled: never used or checked.
    refused = api.get(f"{url}/credentials")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Robot is disabled: enable it to use it."
    refused = api.post(f"{url}/check")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Robot is disabled: enable it first."
    assert not HealthCheck.objects.filter(connection=robot).exists()
    # Disabling again changes nothing.
    assert api.post(f"{url}/disable").status_code == 200
    kinds = ConnectionEvent.Kind
    assert ConnectionEvent.objects.filter(connection=robot, kind=kinds.DISABLED).count() == 1

    response = api.post(f"{url}/enable")
    assert response.status_code == 200 and response.json()["is_enabled"] is True
    assert api.get(f"{url}/credentials").status_code == 200
    assert api.post(f"{url}/check").json()["ok"] is True
    assert ConnectionEvent.objects.filter(connection=robot, kind=kinds.ENABLED, actor=dev).exists()


def test_delete(api, tree, fakehub):
    robot = make_connection(tree["finance"])
    keep = make_connection(tree["finance"], "Keep")
    response = api.delete(f"{API}/connections/{robot.pk}")
    assert response.status_code == 204
    assert response.content == b""
    assert not Connection.objects.filter(pk=robot.pk).exists()
    assert not Credential.objects.filter(pk=robot.pk).exists()
    assert Connection.objects.filter(pk=keep.pk).exists()
    assert api.get(f"{API}/connections/{robot.pk}").status_code == 404
    assert api.delete(f"{API}/connections/{robot.pk}").status_code == 404
