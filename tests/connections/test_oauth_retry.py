"""After an OAuth 2.0 sign-in fails or never comes back, the user goes on
from where they were: "Try again" opens the add-connection details form in
the same folder, filled from the failed flow (never the client secret), the
error above it; a sign-in that never came back (a redirect URI the provider
does not know) is told on the folder's Connections tab with the URI to
register; expired flows are swept away. All against the Sandbox
authorization server in a live server."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import oauth
from connections.models import Connection, OAuthFlow
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


BYOA_DATA = {
    "name": "Finance own app",
    "description": "Payables robot",
    "client_id": OWN_CLIENT_ID,
    "scopes": "profile records.read records.write",
}


def _byoa(client, folder, *, secret=OWN_CLIENT_SECRET, **data):
    return start(client, folder, "byoa", {**BYOA_DATA, "client_secret": secret, **data})


def _link(page: str, testid: str) -> str:
    found = re.search(rf'<a [^>]*href="([^"]+)"[^>]*data-testid="{testid}"', page)
    assert found, f"no {testid} link in:\n{page[:4000]}"
    return unescape(found.group(1))


def _value(page: str, name: str) -> str | None:
    found = re.search(rf'<input [^>]*name="{name}"[^>]*>', page)
    assert found, f"no input {name}"
    value = re.search(r'value="([^"]*)"', found.group(0))
    return unescape(value.group(1)) if value else None


def _connect_error(page: str) -> str:
    found = re.search(r'data-testid="connect-error"><p>(.*?)</p>', page, re.S)
    assert found, "no error above the form"
    return unescape(found.group(1))


# --- 1. Try again after a failed sign-in --------------------------------------


def test_try_again_after_a_wrong_client_secret_keeps_all_but_the_secret(
    client, developer, tree, sandbox_oauth
):
    own_app(sandbox_oauth)
    finance = tree["finance"]
    back = approve(client, continue_url(_byoa(client, finance, secret="wrong-secret-1")))
    failed = client.get(local(back))
    assert failed.status_code == 400
    page = failed.content.decode()
    assert "Invalid client or secret" in page
    retry = _link(page, "try-again")
    assert retry.startswith(reverse("connection_add_details", args=[finance.pk, "sandbox", "byoa"]))

    form = client.get(retry)
    assert form.status_code == 200
    page = form.content.decode()
    assert "Invalid client or secret" in _connect_error(page)
    assert _value(page, "name") == "Finance own app"
    assert _value(page, "description") == "Payables robot"
    assert _value(page, "client_id") == OWN_CLIENT_ID
    assert _value(page, "scopes") == "profile records.read records.write"
    assert _value(page, "client_secret") is None
    assert "wrong-secret-1" not in page

    # With the right secret typed, the sign-in goes through; the failed flow is gone.
    failed_flow = OAuthFlow.objects.get()
    response = client.post(retry, {**BYOA_DATA, "client_secret": OWN_CLIENT_SECRET})
    done = client.get(local(approve(client, continue_url(response))))
    assert done.status_code == 302, done.content.decode()[:2000]
    connection = Connection.objects.get()
    assert (connection.name, connection.description, connection.own_app) == (
        "Finance own app",
        "Payables robot",
        True,
    )
    assert not OAuthFlow.objects.filter(pk=failed_flow.pk).exists()


def test_try_again_after_access_denied(client, developer, tree, sandbox_oauth):
    finance = tree["finance"]
    data = {"name": "Finance sandbox", "description": "For payables"}
    response = start(client, finance, "oauth2_authorization_code", data)
    back = approve(client, continue_url(response), allow=False)
    page = client.get(local(back)).content.decode()
    assert "Access denied" in page
    retry = _link(page, "try-again")
    assert retry.startswith(
        reverse("connection_add_details", args=[finance.pk, "sandbox", "oauth2_authorization_code"])
    )
    page = client.get(retry).content.decode()
    assert "Access denied" in _connect_error(page)
    assert _value(page, "name") == "Finance sandbox"
    assert _value(page, "description") == "For payables"


def test_try_again_after_scopes_refused(client, developer, tree, sandbox_oauth):
    own_app(sandbox_oauth)
    back = approve_refused_scope(client, tree["finance"])
    assert callback_params(back)["error"] == "invalid_scope"
    page = client.get(local(back)).content.decode()
    assert "Insufficient scopes or access denied" in page
    page = client.get(_link(page, "try-again")).content.decode()
    assert "Insufficient scopes or access denied" in _connect_error(page)
    assert _value(page, "scopes") == "profile records.read mail.send"
    assert _value(page, "client_id") == OWN_CLIENT_ID


def approve_refused_scope(client, folder):
    """The sandbox server knows no "mail.send": it sends the browser back
    with invalid_scope at once, before any consent page."""
    response = _byoa(client, folder, scopes="profile records.read mail.send")
    url = continue_url(response)
    from urllib.parse import urlsplit

    answer = client.get(local(url), HTTP_HOST=urlsplit(url).netloc)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return answer["Location"]


def test_try_again_is_offered_only_with_the_users_own_flow(
    client, developer, tree, sandbox_oauth, make_user
):
    own_app(sandbox_oauth)
    finance = tree["finance"]
    back = approve(client, continue_url(_byoa(client, finance, secret="wrong-secret-1")))
    retry = _link(client.get(local(back)).content.decode(), "try-again")
    # Another developer of the folder given the link: an empty form, nothing of Ada's.
    bob = make_user("bob")
    assign(bob, finance, "Automation Developer")
    other = Client()
    other.force_login(bob)
    page = other.get(retry).content.decode()
    assert _value(page, "client_id") is None
    assert "Finance own app" not in page and "Invalid client" not in page
    # Someone else's answer: no flow of theirs to try again.
    page = other.get(local(back)).content.decode()
    assert 'data-testid="try-again"' not in page


def test_a_completed_flow_is_not_offered_again(client, developer, tree, sandbox_oauth):
    finance = tree["finance"]
    response = start(client, finance, "oauth2_authorization_code", {"name": "S"})
    back = approve(client, continue_url(response))
    assert client.get(local(back)).status_code == 302
    replay = client.get(local(back)).content.decode()
    assert "already" in replay and 'data-testid="try-again"' not in replay
    flow = OAuthFlow.objects.get()
    url = reverse(
        "connection_add_details", args=[finance.pk, "sandbox", "oauth2_authorization_code"]
    )
    page = client.get(url, {"retry": flow.pk}).content.decode()
    assert 'data-testid="connect-error"' not in page


def test_try_again_after_a_refused_reconnect_goes_back_to_reconnect(
    client, developer, tree, sandbox_oauth
):
    finance = tree["finance"]
    response = start(client, finance, "oauth2_authorization_code", {"name": "Kept"})
    assert client.get(local(approve(client, continue_url(response)))).status_code == 302
    connection = Connection.objects.get()
    reconnect = reverse("connection_reconnect", args=[finance.pk, connection.pk])
    back = approve(client, continue_url(client.post(reconnect, {"name": "Kept"})), allow=False)
    page = client.get(local(back)).content.decode()
    retry = _link(page, "try-again")
    assert retry.startswith(reconnect + "?retry=")
    form = client.get(retry).content.decode()
    assert "Access denied" in _connect_error(form)
    # Approved this time: the same connection, reconnected; the refused flow is gone.
    back = approve(client, continue_url(client.post(retry, {"name": "Kept"})))
    assert client.get(local(back)).status_code == 302
    assert Connection.objects.get().pk == connection.pk
    assert OAuthFlow.objects.filter(completed_at__isnull=True).count() == 0


# --- 2. A sign-in that never came back ----------------------------------------


def _abandon(client, folder, sandbox_oauth, *, age=timedelta(minutes=2)):
    """A BYOA sign-in whose app lists another redirect URI: the provider
    shows its own error page and never sends the browser back."""
    own_app(sandbox_oauth, redirect_uri="https://elsewhere.example/callback")
    page = client.get(local(continue_url(_byoa(client, folder))))
    assert "Mismatching redirect URI" in page.content.decode()
    flow = OAuthFlow.objects.latest("pk")
    OAuthFlow.objects.filter(pk=flow.pk).update(created_at=timezone.now() - age)
    return flow


def _folder_page(client, folder) -> str:
    response = client.get(reverse("folder_connections", args=[folder.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_folder_page_tells_of_a_sign_in_that_never_came_back(
    client, developer, tree, sandbox_oauth
):
    finance = tree["finance"]
    flow = _abandon(client, finance, sandbox_oauth)
    page = _folder_page(client, finance)
    notice = re.search(r'data-testid="abandoned-sign-in".*?</div>', page, re.S)
    assert notice, page[:4000]
    text = unescape(notice.group(0))
    assert "did not come back" in text
    assert "redirect URI" in text
    assert oauth.redirect_uri() in text
    assert f"{sandbox_oauth.url}/oauth/callback/" in text
    assert "Finance own app" in text

    # Start again: the form filled from the flow, the likely cause above it.
    form = client.get(_link(page, "start-again")).content.decode()
    assert oauth.redirect_uri() in _connect_error(form)
    assert _value(form, "client_id") == OWN_CLIENT_ID
    assert _value(form, "name") == "Finance own app"
    assert _value(form, "client_secret") is None

    # Cancel: the flow is deleted, the notice gone.
    cancel = reverse("oauth_flow_cancel", args=[flow.pk])
    assert f'action="{cancel}"' in page
    answer = client.post(cancel)
    assert answer.status_code == 302
    assert answer["Location"] == reverse("folder_connections", args=[finance.pk])
    assert not OAuthFlow.objects.filter(pk=flow.pk).exists()
    assert 'data-testid="abandoned-sign-in"' not in _folder_page(client, finance)


def test_only_own_older_unfinished_unexpired_sign_ins_are_told(
    client, developer, tree, sandbox_oauth, make_user
):
    finance = tree["finance"]
    flow = _abandon(client, finance, sandbox_oauth, age=timedelta(seconds=20))
    assert 'data-testid="abandoned-sign-in"' not in _folder_page(client, finance)  # still going
    OAuthFlow.objects.filter(pk=flow.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert 'data-testid="abandoned-sign-in"' in _folder_page(client, finance)
    # Not in another folder,
    payables = _folder_page(client, tree["payables"])
    assert 'data-testid="abandoned-sign-in"' not in payables
    # nor for another user of the folder,
    bob = make_user("bob")
    assign(bob, finance, "Automation Developer")
    other = Client()
    other.force_login(bob)
    assert 'data-testid="abandoned-sign-in"' not in _folder_page(other, finance)
    # and bob cannot cancel Ada's.
    assert other.post(reverse("oauth_flow_cancel", args=[flow.pk])).status_code == 404
    assert OAuthFlow.objects.filter(pk=flow.pk).exists()
    # Came back (with an error, shown then), completed or expired: not told.
    for change in (
        {"used_at": timezone.now()},
        {"completed_at": timezone.now()},
        {"expires_at": timezone.now() - timedelta(seconds=1)},
    ):
        OAuthFlow.objects.filter(pk=flow.pk).update(
            used_at=None, completed_at=None, expires_at=timezone.now() + timedelta(minutes=5)
        )
        assert 'data-testid="abandoned-sign-in"' in _folder_page(client, finance)
        OAuthFlow.objects.filter(pk=flow.pk).update(**change)
        assert 'data-testid="abandoned-sign-in"' not in _folder_page(client, finance), change


def test_expired_unfinished_flows_are_deleted_in_one_statement(developer, tree):
    from connections.tasks import delete_expired_oauth_flows

    now = timezone.now()

    def flow(state, *, expires, completed=None):
        return OAuthFlow.objects.create(
            state=state,
            user=developer,
            session_binding="x",
            folder=tree["finance"],
            connector_key="sandbox",
            auth_type="oauth2_authorization_code",
            client_id="c",
            redirect_uri="https://portal.example/oauth/callback/",
            issuer="https://provider.example",
            expires_at=expires,
            completed_at=completed,
        )

    expired = [flow(f"old-{i}", expires=now - timedelta(minutes=i + 1)) for i in range(3)]
    live = flow("live", expires=now + timedelta(minutes=5))
    done = flow("done", expires=now - timedelta(minutes=1), completed=now - timedelta(minutes=2))
    with CaptureQueriesContext(db) as captured:
        assert delete_expired_oauth_flows() == 3
    # One statement (Django wraps it in a transaction: BEGIN and COMMIT aside).
    statements = [
        q["sql"]
        for q in captured
        if not q["sql"].upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))
    ]
    assert len(statements) == 1, statements
    assert statements[0].upper().startswith("DELETE")
    assert not OAuthFlow.objects.filter(pk__in=[f.pk for f in expired]).exists()
    assert set(OAuthFlow.objects.values_list("pk", flat=True)) == {live.pk, done.pk}


def test_the_cleanup_runs_on_beat():
    from django.conf import settings

    from connections.tasks import delete_expired_oauth_flows
    from portal.celery import app

    entries = [e for e in app.conf.beat_schedule.values() if e["task"].endswith("oauth_flows")]
    assert [e["task"] for e in entries] == ["connections.tasks.delete_expired_oauth_flows"]
    assert entries[0]["schedule"] <= settings.PORTAL_OAUTH_FLOW_SECONDS
    # The name beat sends resolves to the task the workers run.
    assert entries[0]["task"] == delete_expired_oauth_flows.name
    assert app.tasks[entries[0]["task"]].run.__module__ == "connections.tasks"
