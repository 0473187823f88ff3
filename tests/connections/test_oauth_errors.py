"""Every OAuth 2.0 failure the reference lists, produced by the real server,
gives its message and stores nothing; state and issuer are checked before
any code is sent anywhere."""

from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone
from oauth2_provider import views

from connections import oauth
from connections.actions import oauth_connections
from connections.catalog import get_catalog
from connections.models import Connection, OAuthFlow
from connections.oauth_apps import ClientCredentials
from tests.connections.oauth_helpers import (
    OWN_CLIENT_ID,
    OWN_CLIENT_SECRET,
    approve,
    callback_params,
    continue_url,
    local,
    own_app,
    start,
)
from tests.factories import assign

pytestmark = pytest.mark.django_db(transaction=True)


def _byoa(client, folder, *, secret=OWN_CLIENT_SECRET, scopes="profile records.read"):
    return start(
        client,
        folder,
        "byoa",
        {"name": "Mine", "client_id": OWN_CLIENT_ID, "client_secret": secret, "scopes": scopes},
    )


def _nothing_stored():
    assert not Connection.objects.exists()


def test_invalid_client_secret(client, developer, tree, sandbox_oauth, token_requests):
    own_app(sandbox_oauth)
    back = approve(client, continue_url(_byoa(client, tree["finance"], secret="wrong-secret-1")))
    answer = client.get(local(back))
    assert answer.status_code == 400
    assert "Invalid client or secret" in answer.content.decode()
    assert token_requests == ["authorization_code"]
    _nothing_stored()


def test_unregistered_redirect_uri(client, developer, tree, sandbox_oauth, token_requests):
    own_app(sandbox_oauth, redirect_uri="https://elsewhere.example/callback")
    page = client.get(local(continue_url(_byoa(client, tree["finance"]))))
    # The provider refuses to send the browser back to an unregistered address.
    assert "Mismatching redirect URI" in page.content.decode()
    assert token_requests == []
    _nothing_stored()


def test_redirect_uri_mismatch_answer_names_the_uri(client, developer, tree, sandbox_oauth):
    """Providers such as GitHub send the browser back with the error instead."""
    own_app(sandbox_oauth)
    continue_url(_byoa(client, tree["finance"]))
    state = OAuthFlow.objects.get().state
    answer = client.get("/oauth/callback/", {"state": state, "error": "redirect_uri_mismatch"})
    assert answer.status_code == 400
    page = answer.content.decode()
    assert f"{sandbox_oauth.url}/oauth/callback/" in page
    assert 'href="/help/troubleshooting/#redirect-uri-mismatch" data-testid="trouble-link"' in page
    _nothing_stored()


def test_denied_consent(client, developer, tree, sandbox_oauth, token_requests):
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "S"})
    back = approve(client, continue_url(response), allow=False)
    assert callback_params(back)["error"] == "access_denied"
    answer = client.get(local(back))
    assert answer.status_code == 400
    page = answer.content.decode()
    assert "Access denied" in page
    assert 'href="/help/troubleshooting/#access-denied" data-testid="trouble-link"' in page
    assert token_requests == []
    _nothing_stored()


def test_missing_mandatory_scope_before_redirect(client, developer, tree, sandbox_oauth):
    own_app(sandbox_oauth)
    response = _byoa(client, tree["finance"], scopes="records.read")
    assert response.status_code == 400
    page = response.content.decode()
    assert "Insufficient scopes" in page and "profile" in page
    assert OWN_CLIENT_ID in page and "records.read" in page  # what was typed is kept
    assert OWN_CLIENT_SECRET not in page  # except the secret
    assert not OAuthFlow.objects.exists()
    _nothing_stored()


def test_missing_mandatory_scope_in_the_token_answer(developer, tree, sandbox_oauth):
    connector = get_catalog().get("sandbox")
    auth = connector.auth_type("oauth2_authorization_code")
    with pytest.raises(oauth.OAuthFlowError, match="did not grant profile"):
        oauth_connections.finish_with_token(
            actor=developer,
            folder=tree["finance"],
            connector=connector,
            auth=auth,
            client=ClientCredentials("c", "s"),
            token={"access_token": "abc", "scope": "records.read"},
            requested_scopes=["profile", "records.read"],
            name="N",
            description="",
            fields={},
        )
    _nothing_stored()


def _started_flow(client, tree):
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "S"})
    return approve(client, continue_url(response))


def test_missing_and_unknown_state(client, developer, tree, sandbox_oauth, token_requests):
    back = _started_flow(client, tree)
    params = callback_params(back)
    for query in ({"code": params["code"]}, {"code": params["code"], "state": "forged"}):
        answer = client.get("/oauth/callback/", query)
        assert answer.status_code == 400
    assert token_requests == []
    _nothing_stored()


def test_replayed_state(client, developer, tree, sandbox_oauth, token_requests):
    back = _started_flow(client, tree)
    assert client.get(local(back)).status_code == 302
    again = client.get(local(back))
    assert again.status_code == 400
    assert "already" in again.content.decode()
    assert token_requests == ["authorization_code"]
    assert Connection.objects.count() == 1


def test_expired_state(client, developer, tree, sandbox_oauth, token_requests):
    back = _started_flow(client, tree)
    OAuthFlow.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = client.get(local(back))
    assert answer.status_code == 400 and "expired" in answer.content.decode()
    assert 'data-testid="trouble-link"' not in answer.content.decode()  # no entry explains it
    assert token_requests == []
    _nothing_stored()


def test_state_of_another_user_or_session(
    client, developer, tree, sandbox_oauth, token_requests, make_user
):
    back = _started_flow(client, tree)
    mallory = make_user("mallory")
    assign(mallory, tree["finance"], "Automation Developer")
    other_user = Client()
    other_user.force_login(mallory)
    assert other_user.get(local(back)).status_code == 400
    other_session = Client()
    other_session.force_login(developer)
    answer = other_session.get(local(back))
    assert answer.status_code == 400
    assert "another browser session" in answer.content.decode()
    assert token_requests == []
    _nothing_stored()


def test_answer_from_another_issuer_is_refused(
    client, developer, tree, sandbox_oauth, token_requests
):
    back = _started_flow(client, tree)
    answer = client.get(local(back) + "&iss=https%3A%2F%2Fevil.example")
    assert answer.status_code == 400
    assert "another authorization server" in answer.content.decode()
    assert token_requests == []
    _nothing_stored()


def test_answer_naming_the_right_issuer_is_accepted(client, developer, tree, sandbox_oauth):
    back = _started_flow(client, tree)
    issuer = OAuthFlow.objects.get().issuer
    answer = client.get(local(back) + "&iss=" + issuer)
    assert answer.status_code == 302
    assert Connection.objects.count() == 1


def test_mandatory_scopes_match_resource_qualified_grants():
    connector = get_catalog().get("microsoft_outlook")
    auth = connector.auth_type("oauth2_authorization_code")
    mandatory = list(auth.oauth2.mandatory_scopes)
    qualified = [f"https://graph.microsoft.com/{scope}" for scope in mandatory]
    assert oauth.missing_mandatory(auth, qualified) == []
    assert oauth.missing_mandatory(auth, qualified[1:]) == mandatory[:1]


def test_what_the_provider_echoes_back_is_masked(
    client, developer, tree, sandbox_oauth, monkeypatch
):
    """A token endpoint that repeats what it refused (the password, the
    client secret) in its error_description: the portal passes its words on,
    but never the secrets it sent."""
    from django.http import JsonResponse
    from oauth2_provider import views

    from connections.oauth_apps import portal_app

    def echoing(self, request, *args, **kwargs):
        return JsonResponse(
            {
                "error": "invalid_grant",
                "error_description": f"password {request.POST.get('password')} refused "
                f"for a client with secret {portal_app('sandbox').client_secret}",
            },
            status=400,
        )

    monkeypatch.setattr(views.TokenView, "post", echoing)
    password = "correct-horse-battery-staple"
    response = start(
        client,
        tree["finance"],
        "oauth2_password",
        {"name": "Echo", "username": "ada", "password": password},
    )
    page = response.content.decode()
    assert "refused the grant" in page
    assert "password •••• refused for a client with secret ••••" in page
    assert password not in page
    assert portal_app("sandbox").client_secret not in page
    _nothing_stored()


@pytest.mark.parametrize(
    "status, anchor", [(503, "provider-error"), (429, "rate-limited"), (400, "not-found")]
)
def test_a_token_endpoint_refusing_without_an_oauth_error_links_by_its_status(
    client, developer, tree, sandbox_oauth, monkeypatch, status, anchor
):
    """The token endpoint answers a bare HTTP error (no OAuth error in its
    body): the error page's guide entry follows its status, which the
    outcome carries as data."""

    def refusing(self, request, *args, **kwargs):
        return HttpResponse("<h1>Nope</h1>", status=status)

    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "S"})
    back = approve(client, continue_url(response))
    monkeypatch.setattr(views.TokenView, "post", refusing)
    answer = client.get(local(back))
    assert answer.status_code == 400
    page = answer.content.decode()
    assert f"token endpoint answered {status}" in page
    assert f'href="/help/troubleshooting/#{anchor}" data-testid="trouble-link"' in page
    _nothing_stored()
