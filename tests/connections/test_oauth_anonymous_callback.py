"""A provider's answer that reaches the callback without a signed-in user
(the portal session ended while the user was at the provider): the code and
state are not copied into the login URL, and the answer sends no Referer."""

from urllib.parse import unquote

import pytest
from django.test import Client

from connections.models import Connection, OAuthFlow
from tests.connections.oauth_helpers import approve, callback_params, continue_url, local, start
from tests.factories import assign

pytestmark = pytest.mark.django_db(transaction=True)

CODE = "Xq9secretAuthCode0123456789"
STATE = "someStateValue_abcdefghijklmnop"


def _assert_kept_out(response, *values):
    everything = unquote(str(response.headers) + response.content.decode())
    for value in values:
        assert value not in everything


def test_anonymous_callback_keeps_the_code_out_of_every_url(client):
    response = client.get("/oauth/callback/", {"code": CODE, "state": STATE})
    assert response.status_code == 400
    assert "Location" not in response
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "Sign in, then start the connection again" in page
    assert 'href="/accounts/login/"' in page
    _assert_kept_out(response, CODE, STATE)


def test_a_real_answer_after_the_session_ended(client, make_user, tree, sandbox_oauth):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "S"})
    back = approve(client, continue_url(response))
    params = callback_params(back)
    signed_out = Client()  # the same browser, its portal session gone
    answer = signed_out.get(local(back))
    assert answer.status_code == 400
    assert answer["Referrer-Policy"] == "no-referrer"
    _assert_kept_out(answer, params["code"], params["state"])
    # Nothing was spent or stored: the user signs in and starts again.
    assert OAuthFlow.objects.get().used_at is None
    assert not Connection.objects.exists()
