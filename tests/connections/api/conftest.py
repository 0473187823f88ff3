"""Calling the runtime API as an automation does: a bearer API key, no session."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from connections.catalog import get_catalog
from portal import api_keys
from tests.connections.fake_provider import DEFINITION, FakeProvider
from tests.factories import assign


@pytest.fixture(scope="module")
def _fake_provider(tmp_path_factory):
    """The fake provider and the FakeHub connector, as tests/connections sets
    them up, but once per module: starting and stopping the server and loading
    the catalog for every test of a matrix would cost most of its time."""
    with FakeProvider() as fake:
        folder = tmp_path_factory.mktemp("connectors")
        (folder / "fakehub.yaml").write_text(DEFINITION.format(base=fake.url))
        with override_settings(
            PORTAL_CONNECTORS_DIRS=[str(folder)],
            PORTAL_EGRESS_ALLOWED_NETWORKS=["127.0.0.0/8", "::1/128"],
        ):
            get_catalog.cache_clear()
            yield fake
        get_catalog.cache_clear()


@pytest.fixture
def provider(_fake_provider):
    """The fake provider, answering normally again."""
    _fake_provider.fail_with = 0
    _fake_provider.token_expiration = ""
    _fake_provider.requests.clear()
    return _fake_provider


@pytest.fixture
def fakehub(provider):
    """The FakeHub connector, pointing at the fake provider on loopback."""
    return get_catalog().get("fakehub")


class ApiClient:
    """A test client that sends one API key on every request."""

    def __init__(self, raw_key: str | None):
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
        self.key = None  # the ApiKey row, when made by ``api_for``

    def _call(self, method: str, path: str, data=None, headers=None):
        send = getattr(self.client, method)
        kwargs = {"headers": {**self.headers, **(headers or {})}}
        if method == "get":
            return send(path, data or {}, **kwargs)
        return send(path, data or {}, content_type="application/json", **kwargs)

    def get(self, path, params=None, **kwargs):
        return self._call("get", path, params, **kwargs)

    def post(self, path, data=None, **kwargs):
        return self._call("post", path, data, **kwargs)

    def patch(self, path, data=None, **kwargs):
        return self._call("patch", path, data, **kwargs)

    def put(self, path, data=None, **kwargs):
        return self._call("put", path, data, **kwargs)

    def delete(self, path, **kwargs):
        return self._call("delete", path, None, **kwargs)

    def request(self, method: str, path: str, *, params=None, body=None, **kwargs):
        """One call by method name (``GET``, ``POST``...), for tables of endpoints."""
        method = method.lower()
        if method == "get":
            return self.get(path, params, **kwargs)
        if method == "delete":
            return self.delete(path, **kwargs)
        return getattr(self, method)(path, body, **kwargs)


@pytest.fixture
def api_for():
    """An API client for ``user`` with a fresh key (scoped to ``folder`` if given);
    the key's row is ``client.key``."""

    def make(user, *, folder=None, name="test key"):
        issued = api_keys.issue(owner=user, name=name, folder=folder, actor=user)
        client = ApiClient(issued.raw)
        client.key = issued.key
        return client

    return make


@pytest.fixture
def dev(tree, make_user):
    """An Automation Developer on Finance (and so on Payables below it)."""
    user = make_user("dev")
    assign(user, tree["finance"], "Automation Developer")
    return user


@pytest.fixture
def api(dev, api_for):
    """The API as ``dev``, with a key of its own."""
    return api_for(dev)


@pytest.fixture
def eager_celery():
    """Tasks run where they are sent: the sweep's refresh task runs in the
    sweep's own thread (no broker, no worker)."""
    from portal.celery import app as celery_app

    conf = celery_app.conf
    before = conf.task_always_eager
    conf.task_always_eager = True
    yield
    conf.task_always_eager = before
