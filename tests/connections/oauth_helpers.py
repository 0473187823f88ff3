"""Driving OAuth 2.0 flows against the Sandbox authorization server
(django-oauth-toolkit) served by pytest-django's live_server: token, refresh
and identity calls go over real HTTP; the user's browser steps go through
the test client, which talks to the same application and database."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

from django.urls import reverse

from connections.sandbox_provider import register_application

OWN_CLIENT_ID = "my-own-app"
OWN_CLIENT_SECRET = "my-own-app-secret-value-123"


def continue_url(response) -> str:
    """The provider URL from the wizard's answer (the no-JavaScript page)."""
    assert response.status_code == 200, response.content.decode()[:3000]
    found = re.search(
        r'<a class="button button--primary" href="([^"]+)" data-testid="continue"',
        response.content.decode(),
    )
    assert found, "no continue link"
    return unescape(found.group(1))


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def approve(client, authorize_url: str, *, allow: bool = True):
    """The user approves (or refuses) at the sandbox provider; returns the
    provider's redirect back to the portal."""
    # As a browser would: at the provider's own host, which names itself (iss).
    host = {"HTTP_HOST": urlsplit(authorize_url).netloc}
    page = client.get(local(authorize_url), **host)
    assert page.status_code == 200, page.content.decode()[:2000]
    form = page.context["form"]
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data["scope"] = form.initial.get("scope", "")
    if allow:
        data["allow"] = "Authorize"
    answer = client.post(local(authorize_url), data, **host)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return answer["Location"]


def callback_params(location: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def start(client, folder, auth_type: str, data: dict):
    url = reverse("connection_add_details", args=[folder.pk, "sandbox", auth_type])
    return client.post(url, data)


def own_app(live_server, *, redirect_uri: str | None = None, secret: str = OWN_CLIENT_SECRET):
    return register_application(
        name="My own app",
        client_id=OWN_CLIENT_ID,
        client_secret=secret,
        redirect_uris=redirect_uri or live_server.url + reverse("oauth_callback"),
    )
