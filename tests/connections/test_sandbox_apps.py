"""The Sandbox apps page: a signed-in person registers an OAuth 2.0 app on
the Sandbox authorization server, sees its client secret once, lists and
deletes their apps. The registration function first, without HTTP; then the
page with the test client; then the secret against the token endpoint."""

import base64
import logging
import time

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher
from django.urls import reverse
from oauth2_provider.models import AccessToken, get_application_model

from connections import oauth, sandbox_provider
from connections.sandbox_provider import (
    APP_LIMIT_REACHED,
    APP_NAME_MAX_LENGTH,
    APP_NAME_REQUIRED,
    APP_NAME_TOO_LONG,
    APPS_PER_USER,
    SANDBOX_CLIENT_ID,
    AppRegistrationError,
    callback_url,
    register_application,
    register_user_app,
    user_apps,
)
from tests.at_once import at_once, needs_a_server_database

Application = get_application_model()
APPS_URL = "/sandbox/apps/"


@pytest.fixture
def sandbox_enabled(settings):
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = "http://testserver"


@pytest.fixture
def ada(make_user):
    return make_user("ada")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def delete_url(app) -> str:
    return reverse("sandbox_app_delete", args=[app.pk])


# --- The registration function -------------------------------------------


def test_registers_a_confidential_code_grant_app_for_the_portal_callback(
    sandbox_enabled, ada, caplog
):
    caplog.set_level(logging.DEBUG)
    registered = register_user_app(user=ada, name="  My test app  ")

    app = Application.objects.get(pk=registered.application.pk)
    assert app.user == ada
    assert app.name == "My test app"
    assert app.client_type == Application.CLIENT_CONFIDENTIAL
    assert app.authorization_grant_type == Application.GRANT_AUTHORIZATION_CODE
    assert app.redirect_uris == callback_url() == oauth.redirect_uri()
    assert app.redirect_uris == "http://testserver/oauth/callback/"
    assert not app.skip_authorization
    assert app.client_id and app.client_id != SANDBOX_CLIENT_ID
    # Stored hashed, as django-oauth-toolkit does for apps people register.
    assert app.hash_client_secret
    secret = registered.client_secret
    assert len(secret) >= 32
    assert app.client_secret != secret
    identify_hasher(app.client_secret)  # a Django password hash
    assert check_password(secret, app.client_secret)
    # Never in a log line, nor in the result's repr.
    assert secret not in caplog.text
    assert secret not in repr(registered)


def test_each_registration_makes_a_new_client_id_and_secret(sandbox_enabled, ada):
    first = register_user_app(user=ada, name="One")
    second = register_user_app(user=ada, name="One")
    assert first.application.client_id != second.application.client_id
    assert first.client_secret != second.client_secret
    assert list(user_apps(ada)) == [second.application, first.application]  # newest first


@pytest.mark.parametrize(
    ("name", "message"),
    [("", APP_NAME_REQUIRED), ("   ", APP_NAME_REQUIRED), ("x" * 81, APP_NAME_TOO_LONG)],
)
def test_a_bad_name_is_refused_and_creates_nothing(sandbox_enabled, ada, name, message):
    with pytest.raises(AppRegistrationError) as refused:
        register_user_app(user=ada, name=name)
    assert refused.value.message == message
    assert refused.value.field == "name"
    assert not Application.objects.exists()


def test_a_name_of_80_characters_is_accepted(sandbox_enabled, ada):
    assert APP_NAME_MAX_LENGTH == 80
    registered = register_user_app(user=ada, name="x" * 80)
    assert registered.application.name == "x" * 80


def test_the_number_of_apps_per_person_is_capped(sandbox_enabled, ada, bob):
    for number in range(APPS_PER_USER):
        register_user_app(user=ada, name=f"App {number}")
    with pytest.raises(AppRegistrationError) as refused:
        register_user_app(user=ada, name="One too many")
    assert refused.value.message == APP_LIMIT_REACHED
    assert refused.value.field is None
    assert user_apps(ada).count() == APPS_PER_USER
    # Someone else's apps (and the portal's own) do not count against bob.
    register_application(
        name="Connections portal",
        client_id=SANDBOX_CLIENT_ID,
        client_secret="portal-secret-1234567890",
        redirect_uris=callback_url(),
    )
    assert register_user_app(user=bob, name="Bob's app").application.user == bob


def test_a_callback_the_sandbox_cannot_accept_is_said_and_creates_nothing(
    sandbox_enabled, ada, settings
):
    # Production-like: https only, while the portal's address is plain http.
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    }
    with pytest.raises(AppRegistrationError) as refused:
        register_user_app(user=ada, name="My app")
    assert refused.value.message.startswith(
        "The Sandbox cannot register an app for this portal's callback "
        "http://testserver/oauth/callback/: "
    )
    assert not Application.objects.exists()


# --- The page -------------------------------------------------------------


def test_the_page_explains_how_to_use_an_app(sandbox_enabled, client, ada):
    client.force_login(ada)
    response = client.get(APPS_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>Sandbox apps</h1>" in page
    assert "pick the <strong>Sandbox</strong> connector and" in page
    assert "<strong>Bring your own OAuth 2.0 app</strong>" in page
    assert "paste the client ID and client secret" in page
    assert "http://testserver/oauth/callback/" in page
    assert 'data-testid="apps-empty"' in page
    assert "no-store" in response["Cache-Control"]
    # The top bar links to it.
    assert f'href="{APPS_URL}">Sandbox apps</a>' in page


def test_register_then_the_secret_is_shown_once(sandbox_enabled, client, ada, caplog):
    caplog.set_level(logging.DEBUG)
    client.force_login(ada)
    response = client.post(APPS_URL, {"name": "Finance test app"})
    assert response.status_code == 302
    assert response["Location"] == APPS_URL
    app = Application.objects.get(user=ada)
    assert app.name == "Finance test app"

    shown = client.get(APPS_URL)
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    secret = shown.context["new_app"]["client_secret"]
    page = shown.content.decode()
    assert 'data-testid="new-app"' in page
    assert "New app: Finance test app" in page
    assert f'value="{app.client_id}"' in page
    assert f'value="{secret}"' in page
    assert "you won't see it again" in page
    assert check_password(secret, Application.objects.get(pk=app.pk).client_secret)
    # Listed with its client ID, created time and redirect URI.
    row = page.split(f'data-app="{app.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Finance test app" in row and app.client_id in row
    assert "http://<wbr>testserver/<wbr>oauth/<wbr>callback/" in row
    assert app.created.strftime("%Y-%m-%d") in row

    again = client.get(APPS_URL)
    assert again.status_code == 200
    assert again.context["new_app"] is None
    page = again.content.decode()
    assert secret not in page
    assert 'data-testid="new-app"' not in page
    assert app.client_id in page  # still listed
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Give the app a name."), ("y" * 81, "The name is longer than 80 characters.")],
)
def test_a_bad_name_on_the_page_answers_400_with_the_message(
    sandbox_enabled, client, ada, name, message
):
    client.force_login(ada)
    response = client.post(APPS_URL, {"name": name})
    assert response.status_code == 400
    page = response.content.decode()
    assert (
        f'<p class="field-error" id="app-name-error" data-testid="app-name-error">{message}</p>'
        in page
    )
    assert 'aria-invalid="true"' in page
    assert f'value="{name}"' in page  # kept for correcting
    assert not Application.objects.exists()
    assert client.session.get("sandbox_new_app") is None


def test_the_cap_on_the_page(sandbox_enabled, client, ada):
    for number in range(APPS_PER_USER):
        register_user_app(user=ada, name=f"App {number}")
    client.force_login(ada)
    page = client.get(APPS_URL).content.decode()
    assert 'data-testid="app-limit"' in page
    response = client.post(APPS_URL, {"name": "Eleventh"})
    assert response.status_code == 400
    assert "delete one you no longer use to register another" in response.content.decode()
    assert 'data-testid="app-error"' in response.content.decode()
    assert user_apps(ada).count() == APPS_PER_USER


def test_the_list_shows_only_ones_own_apps(sandbox_enabled, client, ada, bob):
    mine = register_user_app(user=ada, name="Ada's app").application
    theirs = register_user_app(user=bob, name="Bob's app").application
    client.force_login(ada)
    response = client.get(APPS_URL)
    assert [row["app"].pk for row in response.context["apps"]] == [mine.pk]
    page = response.content.decode()
    assert theirs.client_id not in page and "Bob&#x27;s app" not in page


def test_delete_asks_then_deletes_the_app_and_its_tokens(sandbox_enabled, client, ada):
    registered = register_user_app(user=ada, name="Short-lived app")
    app = registered.application
    client.force_login(ada)

    confirm = client.get(delete_url(app))
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Delete Short-lived app?" in page
    assert app.client_id in page
    assert "Connections that use it stop working" in page
    assert registered.client_secret not in page
    assert Application.objects.filter(pk=app.pk).exists()  # asking deletes nothing

    token = client_credentials_token(client, app.client_id, registered.client_secret)
    assert AccessToken.objects.filter(application=app).count() == 1
    client.force_login(ada)

    response = client.post(delete_url(app))
    assert response.status_code == 302
    assert response["Location"] == APPS_URL
    assert not Application.objects.filter(pk=app.pk).exists()
    assert not AccessToken.objects.filter(application_id=app.pk).exists()
    page = client.get(APPS_URL).content.decode()
    assert "App Short-lived app deleted." in page
    assert token not in page


def test_another_persons_app_answers_404_and_stays(sandbox_enabled, client, ada, bob):
    theirs = register_user_app(user=bob, name="Bob's app").application
    portal_app = register_application(
        name="Connections portal",
        client_id=SANDBOX_CLIENT_ID,
        client_secret="portal-secret-1234567890",
        redirect_uris=callback_url(),
    )
    client.force_login(ada)
    for app in (theirs, portal_app):
        assert client.get(delete_url(app)).status_code == 404
        assert client.post(delete_url(app)).status_code == 404
        assert Application.objects.filter(pk=app.pk).exists()
    assert client.post(reverse("sandbox_app_delete", args=[999_999])).status_code == 404


def test_signed_out_people_are_sent_to_sign_in(sandbox_enabled, client, db):
    response = client.get(APPS_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.post(APPS_URL, {"name": "x"}).status_code == 302
    assert not Application.objects.exists()


def test_with_the_sandbox_off_every_route_answers_404(settings, client, ada):
    settings.PORTAL_SANDBOX_ENABLED = True
    app = register_user_app(user=ada, name="Made while on").application
    settings.PORTAL_SANDBOX_ENABLED = False
    client.force_login(ada)
    assert client.get(APPS_URL).status_code == 404
    assert client.post(APPS_URL, {"name": "Made while off"}).status_code == 404
    assert client.get(delete_url(app)).status_code == 404
    assert client.post(delete_url(app)).status_code == 404
    assert list(Application.objects.values_list("name", flat=True)) == ["Made while on"]
    home = client.get("/", follow=True)
    assert home.status_code == 200
    assert "Sandbox apps" not in home.content.decode()
    client.logout()
    assert client.get(APPS_URL).status_code == 404


# --- The secret against the Sandbox token endpoint -------------------------


def client_credentials_token(client, client_id: str, client_secret: str) -> str:
    client.logout()
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    response = client.post(
        "/sandbox/oauth/token/",
        {"grant_type": "client_credentials", "scope": "profile"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def test_the_shown_secret_authenticates_the_app_and_a_wrong_one_does_not(
    sandbox_enabled, client, ada
):
    client.force_login(ada)
    client.post(APPS_URL, {"name": "Checked app"})
    shown = client.get(APPS_URL).context["new_app"]
    client_id, secret = shown["app"].client_id, shown["client_secret"]

    token = client_credentials_token(client, client_id, secret)
    me = client.get("/sandbox/api/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert me.status_code == 200
    assert me.json()["login"] == f"app:{client_id}"

    stored = Application.objects.get(client_id=client_id).client_secret
    for wrong in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored):
        basic = base64.b64encode(f"{client_id}:{wrong}".encode()).decode()
        refused = client.post(
            "/sandbox/oauth/token/",
            {"grant_type": "client_credentials", "scope": "profile"},
            HTTP_AUTHORIZATION=f"Basic {basic}",
        )
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"


# --- The cap with registrations at the same moment (PostgreSQL) -------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("guarded", [True, False], ids=["with-lock", "lock-bypassed"])
def test_registrations_at_once_never_pass_the_cap(settings, make_user, monkeypatch, guarded):
    needs_a_server_database()
    settings.PORTAL_SANDBOX_ENABLED = True
    ada = make_user("ada")
    for number in range(APPS_PER_USER - 1):
        register_user_app(user=ada, name=f"App {number}")
    # Slow the window between counting the apps and saving the new one.
    slow = sandbox_provider.generate_client_secret

    def slowly():
        time.sleep(0.3)
        return slow()

    monkeypatch.setattr(sandbox_provider, "generate_client_secret", slowly)
    if not guarded:
        monkeypatch.setattr(sandbox_provider, "_hold_owner", lambda user: None)

    made, refused = at_once(lambda: register_user_app(user=ada, name="Last one"), times=4)

    if guarded:
        assert len(made) == 1
        assert [error.message for error in refused] == [APP_LIMIT_REACHED] * 3
        assert user_apps(ada).count() == APPS_PER_USER
    else:  # what the lock prevents does happen without it
        assert len(made) > 1 and not refused
        assert user_apps(ada).count() > APPS_PER_USER
