import pytest

from connections.catalog import get_catalog
from tests.connections.fake_provider import DEFINITION, FakeProvider
from tests.factories import assign


@pytest.fixture
def provider():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fakehub(provider, tmp_path, settings):
    """The FakeHub connector, pointing at the fake provider on loopback (which
    the operator allows here through PORTAL_EGRESS_ALLOWED_NETWORKS)."""
    folder = tmp_path / "connectors"
    folder.mkdir()
    (folder / "fakehub.yaml").write_text(DEFINITION.format(base=provider.url))
    settings.PORTAL_CONNECTORS_DIRS = [str(folder)]
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    get_catalog.cache_clear()
    yield get_catalog().get("fakehub")
    get_catalog.cache_clear()


@pytest.fixture
def sandbox_oauth(live_server, settings):
    """The Sandbox authorization server in the live server, and the portal's
    own app registered on it, as `make run` sets them up."""
    from connections.sandbox_provider import ensure_portal_app

    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    ensure_portal_app()
    return live_server


@pytest.fixture
def token_requests(monkeypatch):
    """Counts the requests that reach the sandbox server's token endpoint."""
    from oauth2_provider import views

    calls = []
    original = views.TokenView.post

    def counting(self, request, *args, **kwargs):
        calls.append(request.POST.get("grant_type"))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(views.TokenView, "post", counting)
    return calls


@pytest.fixture
def developer(make_user, tree, client):
    """ada, Automation Developer on Finance (and so on Payables), signed in."""
    user = make_user("ada", email="ada@example.com")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    return user
