"""User-supplied addresses cannot make the portal call private, loopback or
metadata addresses: refused with a clear message, and nothing reaches them."""

import socket

import pytest
from django.urls import reverse

from connections.catalog import get_catalog
from connections.models import Connection
from tests.connections.fake_provider import DEFINITION, GOOD_TOKEN, FakeProvider
from tests.factories import assign


@pytest.fixture
def developer(make_user, tree, client):
    user = make_user("dev")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    return user


def _generic(client, folder, base_url):
    url = reverse("connection_add_details", args=[folder.pk, "generic_http", "pat"])
    return client.post(
        url, {"name": "Internal", "field_base_url": base_url, "secret_token": "t" * 20}
    )


@pytest.mark.parametrize(
    "base_url",
    [
        "https://127.0.0.1:{port}",
        "https://[::1]:{port}",
        "https://169.254.169.254",
        "https://10.20.30.40",
        "https://192.168.1.10:{port}",
        "https://2130706433:{port}",
        "https://internal.example.test:{port}",  # a public-looking name for 127.0.0.1
    ],
)
def test_private_targets_refused(client, developer, tree, provider, monkeypatch, base_url):
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "internal.example.test":
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    response = _generic(client, tree["finance"], base_url.format(port=provider.port))
    assert response.status_code == 400
    page = response.content.decode()
    assert any(
        words in page
        for words in ("loopback", "private", "metadata", "link-local", "not allowed", "refused")
    ), page[page.find("alert") - 200 : page.find("alert") + 800]
    assert provider.requests == []
    assert not Connection.objects.exists()


def test_instance_url_must_match_the_connector(client, developer, tree):
    url = reverse("connection_add_details", args=[tree["finance"].pk, "jira", "basic"])
    for bad in ("https://127.0.0.1", "https://evil.example.com", "http://x.atlassian.net"):
        response = client.post(
            url,
            {
                "name": "J",
                "field_site_url": bad,
                "field_email": "a@example.com",
                "secret_api_token": "x" * 24,
            },
        )
        assert response.status_code == 400
        assert "atlassian.net" in response.content.decode()
    assert not Connection.objects.exists()


def test_redirect_to_a_private_address_is_refused(client, developer, tree, settings, tmp_path):
    """A provider the operator allows (127.0.0.2) redirects to one they do not
    (127.0.0.1): the redirect is refused and the second server sees nothing."""
    target = FakeProvider("127.0.0.1")
    with target, FakeProvider("127.0.0.2", redirect_to=target.url) as front:
        folder = tmp_path / "defs"
        folder.mkdir()
        (folder / "fakehub.yaml").write_text(DEFINITION.format(base=front.url))
        (folder / "fakehub.yaml").write_text(
            (folder / "fakehub.yaml").read_text().replace("[localhost]", '["127.0.0.2"]')
        )
        settings.PORTAL_CONNECTORS_DIRS = [str(folder)]
        settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.2/32"]
        get_catalog.cache_clear()
        url = reverse("connection_add_details", args=[tree["finance"].pk, "fakehub", "pat"])
        response = client.post(url, {"name": "R", "secret_token": GOOD_TOKEN})
        assert response.status_code == 400
        assert len(front.requests) == 1
        assert target.requests == []
    assert not Connection.objects.exists()
    get_catalog.cache_clear()
