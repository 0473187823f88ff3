"""The connections pages that htmx swaps parts of answer it one way
(portal/htmx.py): htmx aimed at a fragment gets that fragment alone, a plain
request the full page (or, for the Check now endpoints, the connection's
page by redirect), and every answer says Vary: HX-Request, HX-Target."""

import pytest
from django.urls import reverse

from connections.models import ConnectionState
from tests.connections.broken_credentials import break_credential
from tests.factories import ConnectionFactory, assign


def htmx(target: str | None = None) -> dict:
    headers = {"HTTP_HX_REQUEST": "true"}
    if target:
        headers["HTTP_HX_TARGET"] = target
    return headers


def varies_on_htmx(response) -> bool:
    named = {header.strip().lower() for header in response.get("Vary", "").split(",")}
    return {"hx-request", "hx-target"} <= named


def assert_fragment(response, marker: str) -> str:
    body = response.content.decode()
    assert "<html" not in body and marker in body, body[:2000]
    assert varies_on_htmx(response)
    return body


def assert_page(response, marker: str) -> str:
    body = response.content.decode()
    assert "<html" in body and marker in body, body[:2000]
    assert varies_on_htmx(response)
    return body


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def developer(make_user, tree, client):
    user = make_user("dev")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    return user


def test_connector_search_answers_the_list_or_the_page(client, tree, developer):
    url = reverse("connection_add", args=[tree["finance"].pk])
    fragment = client.get(url, {"q": "sandbox"}, **htmx("connector-list"))
    page = client.get(url, {"q": "sandbox"})
    assert fragment.status_code == page.status_code == 200
    body = assert_fragment(fragment, 'data-connector="sandbox"')
    assert body.lstrip().startswith('<div id="connector-list">')
    assert_page(page, 'id="connector-search"')


def test_the_connection_list_answers_the_table_or_the_page(client, tree, developer):
    ConnectionFactory(folder=tree["finance"], name="Payroll", sandbox=True)
    url = reverse("folder_connections", args=[tree["finance"].pk])
    fragment = client.get(url, {"q": "pay"}, **htmx("connection-table"))
    page = client.get(url, {"q": "pay"})
    assert fragment.status_code == page.status_code == 200
    body = assert_fragment(fragment, "Payroll")
    assert body.lstrip().startswith('<div id="connection-table">')
    assert 'class="filters"' not in body
    assert_page(page, 'class="filters"')
    # htmx with no target (a history restore) gets the page.
    assert_page(client.get(url, {"q": "pay"}, **htmx()), 'class="filters"')


def test_check_now_answers_the_status_or_goes_to_the_page(client, tree, developer):
    connection = ConnectionFactory(folder=tree["finance"], name="Robot", sandbox=True)
    args = [tree["finance"].pk, connection.pk]
    url = reverse("connection_check", args=args)
    fragment = client.post(url, **htmx("check-status"))
    plain = client.post(url)
    assert fragment.status_code == 200
    assert_fragment(fragment, 'data-testid="check-progress"')
    assert plain.status_code == 302
    assert plain["Location"] == reverse("connection_detail", args=args)
    assert varies_on_htmx(plain)
    # On the page the partial's element starts empty (and so hidden).
    page = client.get(plain["Location"]).content.decode()
    assert 'data-testid="check-status"></div>' in page


def test_check_progress_answers_the_status_or_goes_to_the_page(client, tree, developer):
    connection = ConnectionFactory(folder=tree["finance"], name="Robot", sandbox=True)
    args = [tree["finance"].pk, connection.pk]
    url = reverse("connection_check_progress", args=args)
    params = {"after": 0, "started": 0}  # long ago: the waiting is over
    done = client.get(url, params, **htmx("check-status"))
    assert done.status_code == 286
    assert_fragment(done, 'data-testid="check-timeout"')
    for request in ({}, htmx()):
        away = client.get(url, params, **request)
        assert away.status_code == 302
        assert away["Location"] == reverse("connection_detail", args=args)
        assert varies_on_htmx(away)


def test_the_oauth_details_form_answers_its_panel_or_the_page(client, tree, developer):
    """A refused authorization-code form (posted by htmx) comes back as its
    panel; without htmx, as the page; 400 either way."""
    url = reverse("connection_add_details", args=[tree["finance"].pk, "sandbox", "byoa"])
    fragment = client.post(url, {"name": ""}, **htmx("connect-panel"))
    page = client.post(url, {"name": ""})
    assert fragment.status_code == page.status_code == 400
    body = assert_fragment(fragment, 'data-testid="connect-form"')
    assert body.lstrip().startswith('<section class="panel" id="connect-panel">')
    assert 'hx-target="#connect-panel"' in body and "hx-select" not in body
    assert_page(page, 'id="connect-panel"')
    assert_page(client.get(url), 'hx-target="#connect-panel"')


def test_reconnect_answers_its_panel_or_the_page_and_sends_htmx_to_the_provider(
    client, tree, developer, settings
):
    settings.PORTAL_OAUTH_APPS = {"sandbox": {"client_id": "portal-app", "client_secret": "s"}}
    connection = ConnectionFactory(
        folder=tree["finance"],
        name="Signed in",
        sandbox=True,
        auth_type="oauth2_authorization_code",
    )
    url = reverse("connection_reconnect", args=[tree["finance"].pk, connection.pk])
    assert_fragment(client.get(url, **htmx("connect-panel")), 'data-testid="connect-form"')
    assert_page(client.get(url), 'data-testid="connect-form"')
    # (An empty POST would leave the form unbound: the browser sends the token.)
    by_htmx = client.post(url, {"csrfmiddlewaretoken": "t"}, **htmx("connect-panel"))
    plain = client.post(url, {"csrfmiddlewaretoken": "t"})
    assert by_htmx.status_code == 200
    assert "/sandbox/oauth/authorize/" in by_htmx["HX-Redirect"]
    assert varies_on_htmx(by_htmx)
    assert_page(plain, 'data-testid="continue"')


def test_a_byoa_reconnect_sends_htmx_on_without_swapping_anything(
    client, tree, developer, settings
):
    folder = tree["finance"]
    own = {"client_id": "own-app", "client_secret": "own-app-secret", "scope": "profile"}
    connection = ConnectionFactory(
        folder=folder,
        name="Own app",
        sandbox=True,
        auth_type="oauth2_authorization_code",
        own_app=True,
        secret=own,
    )
    url = reverse("connection_reconnect", args=[folder.pk, connection.pk])
    form = client.get(url).content.decode()
    assert 'hx-swap="none"' in form and "hx-select" not in form
    by_htmx = client.post(url, **htmx())
    assert "/sandbox/oauth/authorize/" in by_htmx["HX-Redirect"] and varies_on_htmx(by_htmx)
    assert_page(client.post(url), 'data-testid="continue"')

    # A secret that cannot be read: to the connection's page, which says so.
    broken = ConnectionFactory(
        folder=folder,
        name="Broken",
        sandbox=True,
        auth_type="oauth2_authorization_code",
        own_app=True,
    )
    break_credential(broken, "altered", settings, own)
    url = reverse("connection_reconnect", args=[folder.pk, broken.pk])
    detail = reverse("connection_detail", args=[folder.pk, broken.pk])
    by_htmx = client.post(url, **htmx())
    assert by_htmx.status_code == 200 and by_htmx["HX-Redirect"] == detail
    assert varies_on_htmx(by_htmx)
    assert "cannot be read" in client.get(detail).content.decode()
    broken.refresh_from_db()
    assert broken.state == ConnectionState.MISCONFIGURED
