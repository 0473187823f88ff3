"""OAuth 2.0 connections against a real authorization server
(django-oauth-toolkit in a live server): authorization code with PKCE,
password grant, BYOA, refresh, reconnect and authenticate."""

import pytest

from connections import oauth, refresh, vault
from connections.models import Connection, ConnectionState, OAuthFlow
from tests.connections.oauth_helpers import (
    OWN_CLIENT_ID,
    OWN_CLIENT_SECRET,
    approve,
    continue_url,
    local,
    own_app,
    start,
)
from tests.factories import PASSWORD, assign

pytestmark = pytest.mark.django_db(transaction=True)


def _authorization_code(client, folder, data=None, auth_type="oauth2_authorization_code"):
    response = start(client, folder, auth_type, {"name": "Sandbox OAuth", **(data or {})})
    authorize_url = continue_url(response)
    back = approve(client, authorize_url)
    return authorize_url, client.get(local(back))


def test_authorization_code_with_pkce(client, developer, tree, sandbox_oauth, token_requests):
    authorize_url, done = _authorization_code(client, tree["finance"])
    assert "code_challenge=" in authorize_url and "code_challenge_method=S256" in authorize_url
    assert done.status_code == 302
    assert done["Referrer-Policy"] == "no-referrer"
    connection = Connection.objects.get()
    assert connection.state == ConnectionState.CONNECTED
    assert connection.account_identity == "ada"
    assert connection.authenticated_by == developer
    assert not connection.own_app
    secret = vault.read_secret(connection)
    assert secret["access_token"] and secret["refresh_token"]
    assert "client_secret" not in secret  # the portal's app secret stays with the app
    assert connection.token_expires_at is not None
    assert token_requests == ["authorization_code"]
    assert OAuthFlow.objects.get().completed_at is not None


def test_server_verifies_the_pkce_challenge(client, developer, tree, sandbox_oauth):
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "S"})
    back = approve(client, continue_url(response))
    flow = OAuthFlow.objects.get()
    sealed = vault.unseal_row(flow)
    vault.seal_row(flow, {**sealed, "code_verifier": "x" * 64})  # not the one challenged
    flow.save()
    answer = client.get(local(back))
    assert answer.status_code == 400
    assert "refused the grant" in answer.content.decode()
    assert not Connection.objects.exists()


def test_password_grant_keeps_no_password(client, developer, tree, sandbox_oauth):
    response = start(
        client,
        tree["finance"],
        "oauth2_password",
        {"name": "Robot", "username": "ada", "password": PASSWORD},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get()
    assert connection.account_identity == "ada"
    assert PASSWORD not in str(vault.read_secret(connection))


def test_byoa_with_own_application(client, developer, tree, sandbox_oauth, token_requests):
    own_app(sandbox_oauth)
    authorize_url, done = _authorization_code(
        client,
        tree["finance"],
        {
            "client_id": OWN_CLIENT_ID,
            "client_secret": OWN_CLIENT_SECRET,
            "scopes": "profile records.read records.write",
        },
        auth_type="byoa",
    )
    assert f"client_id={OWN_CLIENT_ID}" in authorize_url
    assert "records.write" in authorize_url
    assert done.status_code == 302
    connection = Connection.objects.get()
    assert connection.own_app
    secret = vault.read_secret(connection)
    assert secret["client_id"] == OWN_CLIENT_ID
    assert secret["client_secret"] == OWN_CLIENT_SECRET
    assert set(secret["scope"].split()) == {"profile", "records.read", "records.write"}


def test_refresh_uses_the_stored_refresh_token(client, developer, tree, sandbox_oauth, mailoutbox):
    _authorization_code(client, tree["finance"])
    connection = Connection.objects.get()
    before = vault.read_secret(connection)
    after = refresh.refresh_connection(connection.pk, force=True)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]  # the sandbox rotates them
    assert vault.read_secret(connection) == after
    assert connection.events.filter(kind="refreshed").count() == 1
    # A token that is not due is not refreshed again.
    assert refresh.refresh_connection(connection.pk) == after
    assert connection.events.filter(kind="refreshed").count() == 1
    # The rotated-out refresh token is dead at the server: its owner must reconnect.
    vault.store_secret(connection, before)
    with pytest.raises(refresh.RefreshError, match="refused the grant"):
        refresh.refresh_connection(connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    assert "Reconnect" in connection.last_error
    assert len(mailoutbox) == 1 and "ada@example.com" in mailoutbox[0].to
    # ... and nobody tries again until it is reconnected.
    with pytest.raises(refresh.RefreshError, match="needs reconnecting"):
        refresh.refresh_connection(connection.pk, force=True)
    assert len(mailoutbox) == 1


def test_byoa_refresh_uses_a_rotated_client_secret(client, developer, tree, sandbox_oauth):
    app = own_app(sandbox_oauth)
    _authorization_code(
        client,
        tree["finance"],
        {"client_id": OWN_CLIENT_ID, "client_secret": OWN_CLIENT_SECRET, "scopes": "profile"},
        auth_type="byoa",
    )
    connection = Connection.objects.get()
    app.client_secret = "rotated-secret-value-456"
    app.save()
    with pytest.raises(refresh.RefreshError, match="Invalid client or secret"):
        refresh.refresh_connection(connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.state == ConnectionState.MISCONFIGURED
    url = f"/folders/{connection.folder_id}/connections/{connection.pk}/client-secret/"
    assert client.post(url, {"client_secret": "rotated-secret-value-456"}).status_code == 302
    assert refresh.refresh_connection(connection.pk, force=True)["access_token"]
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED


def test_reconnect_keeps_the_connection(client, developer, tree, sandbox_oauth):
    _authorization_code(client, tree["finance"])
    connection = Connection.objects.get()
    old_token = vault.read_secret(connection)["access_token"]
    response = client.post(
        f"/folders/{tree['finance'].pk}/connections/{connection.pk}/reconnect/",
        {"name": connection.name},
    )
    back = approve(client, continue_url(response))
    assert client.get(local(back)).status_code == 302
    assert Connection.objects.get().pk == connection.pk
    assert vault.read_secret(connection)["access_token"] != old_token
    assert connection.events.filter(kind="reconnected").count() == 1
    # A new token set: a refresh still running on the old one cannot store over it.
    reconnected = Connection.objects.get()
    event = reconnected.events.get(kind="reconnected")
    assert reconnected.token_expires_at is not None
    assert event.token_expires_at == reconnected.token_expires_at
    assert reconnected.token_version == connection.token_version + 1
    assert reconnected.token_lifetime_seconds == 3600


def test_a_name_taken_while_signing_in_is_said_plainly(client, developer, tree, sandbox_oauth):
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "Twin"})
    back = approve(client, continue_url(response))
    Connection.objects.create(
        folder=tree["finance"], connector_key="sandbox", auth_type="pat", name="Twin"
    )
    done = client.get(local(back))
    assert done.status_code == 400
    assert "A connection named &#x27;Twin&#x27; already exists in Finance." in done.text
    assert Connection.objects.count() == 1


def test_reconnect_as_another_account_asks_first(client, developer, tree, sandbox_oauth, make_user):
    _authorization_code(client, tree["finance"])
    connection = Connection.objects.get()
    old_secret = vault.read_secret(connection)
    bob = make_user("bob")
    assign(bob, tree["finance"], "Automation Developer")
    client.force_login(bob)
    response = client.post(
        f"/folders/{tree['finance'].pk}/connections/{connection.pk}/reconnect/",
        {"name": connection.name},
    )
    back = approve(client, continue_url(response))
    confirm = client.get(local(back))
    assert confirm.status_code == 302 and "/confirm/" in confirm["Location"]
    assert vault.read_secret(connection) == old_secret  # nothing replaced yet
    page = client.get(confirm["Location"]).content.decode()
    assert "bob" in page and "ada" in page
    client.post(confirm["Location"], {"confirm": "1"})
    connection.refresh_from_db()
    assert connection.account_identity == "bob"
    assert connection.authenticated_by == bob


def test_authenticate_a_never_authenticated_connection(client, developer, tree, sandbox_oauth):
    connection = Connection.objects.create(
        folder=tree["finance"],
        connector_key="sandbox",
        name="Deployed",
        auth_type="oauth2_authorization_code",
    )
    detail = client.get(f"/folders/{tree['finance'].pk}/connections/{connection.pk}/")
    assert "Authenticate" in detail.content.decode()
    assert "System" in detail.content.decode()
    response = client.post(
        f"/folders/{tree['finance'].pk}/connections/{connection.pk}/reconnect/",
        {"name": "Deployed"},
    )
    back = approve(client, continue_url(response))
    client.get(local(back))
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert connection.authenticated_by == developer


def test_lifetime_warning(client, developer, tree, sandbox_oauth):
    _authorization_code(client, tree["finance"])
    assert Connection.objects.get().warning == ""  # an hour and a refresh token: fine
    assert oauth.lifetime_warning({"expires_in": 60, "refresh_token": "r"}).startswith(
        "Token expiring frequently"
    )
    assert oauth.lifetime_warning({"expires_in": 3600}).startswith("Token expiring frequently")
    assert oauth.lifetime_warning({"expires_in": 3600, "refresh_token": "r"}) == ""


def test_client_credentials_grant(client, developer, tree, sandbox_oauth):
    from connections.oauth_apps import portal_app
    from connections.sandbox_provider import SANDBOX_CLIENT_ID

    app = portal_app("sandbox")
    response = start(
        client,
        tree["finance"],
        "oauth2_client_credentials",
        {"name": "Service", "client_id": SANDBOX_CLIENT_ID, "client_secret": app.client_secret},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get()
    assert connection.account_identity == f"app:{SANDBOX_CLIENT_ID}"
    assert connection.authenticated_by == developer


def test_sandbox_records_api_checks_scopes(client, developer, tree, sandbox_oauth):
    import requests

    _authorization_code(client, tree["finance"])
    token = vault.read_secret(Connection.objects.get())["access_token"]
    api = sandbox_oauth.url + "/sandbox/api/records"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(api, headers=headers, timeout=5).json() == {"records": []}
    refused = requests.post(api, json={"title": "x"}, headers=headers, timeout=5)
    assert refused.status_code == 403  # the default scopes do not include records.write
    assert requests.get(api, timeout=5).status_code == 401


def test_client_credentials_token_is_renewed(client, developer, tree, sandbox_oauth):
    from connections.oauth_apps import portal_app
    from connections.sandbox_provider import SANDBOX_CLIENT_ID

    response = start(
        client,
        tree["finance"],
        "oauth2_client_credentials",
        {
            "name": "Service",
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": portal_app("sandbox").client_secret,
        },
    )
    assert response.status_code == 302
    connection = Connection.objects.get()
    before = vault.read_secret(connection)
    assert before["client_id"] == SANDBOX_CLIENT_ID and not before["refresh_token"]
    after = refresh.refresh_connection(connection.pk, force=True)
    assert after["access_token"] != before["access_token"]
    page = client.get(f"/folders/{tree['finance'].pk}/connections/{connection.pk}/")
    assert "OAuth 2.0 Client credentials" in page.content.decode()


def test_byoa_reconnect_whose_stored_scopes_no_longer_do_says_so(client, developer, tree, settings):
    """The stored scopes lack one the connector now requires: the reconnect
    says which, on the connection's page, instead of failing."""
    settings.PORTAL_SANDBOX_ENABLED = True
    connection = Connection.objects.create(
        folder=tree["finance"],
        connector_key="sandbox",
        auth_type="oauth2_authorization_code",
        name="Own app",
        own_app=True,
        state=ConnectionState.CONNECTED,
    )
    stored = {"client_id": "app", "client_secret": "s", "scope": "records.read"}
    vault.store_secret(connection, {"access_token": "a", "refresh_token": "r", **stored})
    args = [tree["finance"].pk, connection.pk]
    done = client.post(f"/folders/{args[0]}/connections/{args[1]}/reconnect/", follow=True)
    assert done.redirect_chain[-1][0] == f"/folders/{args[0]}/connections/{args[1]}/"
    assert "Insufficient scopes: the connector needs profile" in done.content.decode()
    assert not OAuthFlow.objects.exists()
