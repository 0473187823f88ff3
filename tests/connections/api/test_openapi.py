"""The API describes itself: a valid OpenAPI document listing every route
with its methods, every documented operation reachable, and the docs page."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from connections.api.site import api
from tests.connections.api.helpers import API

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def schema(client, db):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    return response.json()


def _registered() -> set[tuple[str, str]]:
    """(path as the schema writes it, method) of every route on the ninja API."""
    api.urls  # noqa: B018 (binds the routers)
    routes = set()
    for prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            full = "/".join(part.strip("/") for part in (API, prefix, path) if part.strip("/"))
            full = re.sub(r"{\w+:(\w+)}", r"{\1}", "/" + full)
            for operation in path_view.operations:
                routes.update((full, method.lower()) for method in operation.methods)
    return routes


def test_schema_is_valid_openapi(schema):
    validate(schema)
    assert schema["info"]["title"] == "Connections portal API"
    assert schema["components"]["securitySchemes"]


def test_every_route_is_in_the_schema(schema):
    registered = _registered()
    assert len(registered) == 48
    documented = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert registered == documented
    for path, method in documented:
        operation = schema["paths"][path][method]
        assert operation.get("summary"), (path, method)
        assert operation.get("security"), (path, method)  # every operation needs a key


def test_every_documented_operation_is_reachable(schema, client, settings):
    """Each path and method of the schema reaches its operation (which asks
    for a key), never a 404 or 405 from routing."""
    # One refused key per operation: more than one address's budget of them.
    settings.PORTAL_API_REFUSED_RATE_LIMIT = "1000/m"
    for path, operations in schema["paths"].items():
        url = re.sub(r"{\w+}", "1", path)
        for method in operations:
            if method not in METHODS:
                continue
            response = getattr(client, method)(url, content_type="application/json")
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["detail"].startswith("Send an API key")


def test_docs_page(client, db):
    response = client.get(f"{API}/docs")
    assert response.status_code == 200
    assert "openapi.json" in response.content.decode()


def test_an_unknown_path_answers_json_404(db):
    from django.test import Client

    response = Client().get("/api/v1/no/such/thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "No endpoint /api/v1/no/such/thing; see /api/v1/docs."}
