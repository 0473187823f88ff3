"""Calling the runtime API as an automation does: a bearer API key, no session."""

from __future__ import annotations

import pytest
from django.test import Client

from portal import api_keys


class ApiClient:
    """A test client that sends one API key on every request."""

    def __init__(self, raw_key: str | None):
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}

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


@pytest.fixture
def api_for():
    """An API client for ``user`` with a fresh key (scoped to ``folder`` if given)."""

    def make(user, *, folder=None, name="test key"):
        issued = api_keys.issue(owner=user, name=name, folder=folder, actor=user)
        return ApiClient(issued.raw)

    return make
