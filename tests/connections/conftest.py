import pytest

from connections.catalog import get_catalog
from tests.connections.fake_provider import DEFINITION, FakeProvider


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
