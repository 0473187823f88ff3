"""The API answers what its schema says, whatever it is sent: characters no
field may hold are refused in the API's error shape (never a server error),
a secret that cannot travel in a header is refused by name on the API and the
pages alike, every path under /api/v1/ answers the API's JSON, and the schema
lists every status an operation answers."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from connections import vault
from connections.models import Connection
from tests.connections.api.helpers import API, body, make_connection, snapshot
from tests.connections.fake_provider import GOOD_TOKEN


def _refused(response, field: str) -> dict:
    assert response.status_code == 422, (response.status_code, response.content[:300])
    answer = body(response)
    assert isinstance(answer["detail"], str) and answer["detail"]
    assert field in answer["errors"], answer
    return answer


# --- NUL characters ------------------------------------------------------


@pytest.mark.parametrize(
    "path, params, field",
    [
        ("/folders/{finance}/connections", {"connector": "a\x00b"}, "connector"),
        ("/folders/{finance}/connections", {"state": "\x00"}, "state"),
        ("/connections/resolve", {"folder": "Shared/Finance", "connector": "\x00"}, "connector"),
        ("/connections/resolve", {"folder": "Sha\x00red", "connector": "fakehub"}, "folder"),
        (
            "/credentials",
            {"folder": "Shared/Finance", "connector": "fakehub", "name": "\x00"},
            "name",
        ),
    ],
)
def test_a_nul_in_a_query_parameter_is_refused(api, tree, fakehub, path, params, field):
    make_connection(tree["finance"])
    response = api.get(API + path.format(finance=tree["finance"].pk), params)
    answer = _refused(response, field)
    assert "NUL" in answer["errors"][field][0]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"description": "a\x00b"}, "description"),
        ({"name": "Ro\x00bot"}, "name"),
        ({"fields": {"email": "a\x00@example.com"}}, "email"),
        ({"secret": {"token": "ghp_\x00"}}, "token"),
        ({"secret": {"to\x00ken": GOOD_TOKEN}}, "secret"),
    ],
)
def test_a_nul_in_a_body_field_is_refused_on_create(api, tree, fakehub, data, field):
    payload = {
        "connector": "fakehub",
        "auth_type": "pat",
        "name": "Robot",
        "secret": {"token": GOOD_TOKEN},
        **data,
    }
    response = api.post(f"{API}/folders/{tree['finance'].pk}/connections", payload)
    _refused(response, field)
    assert not Connection.objects.exists()


def test_a_nul_in_a_body_field_is_refused_on_edit(api, tree, fakehub):
    connection = make_connection(tree["finance"])
    before = snapshot(tree["finance"])
    response = api.patch(f"{API}/connections/{connection.pk}", {"description": "a\x00b"})
    _refused(response, "description")
    assert snapshot(tree["finance"]) == before


# --- Secrets that cannot be sent in a header ----------------------------


@pytest.mark.parametrize("value", ["a\nb", "ghp_abc\r\nX-Injected: 1", "ghp_\x1b[0m"])
def test_a_secret_with_a_line_break_is_refused_on_create(api, tree, fakehub, provider, value):
    response = api.post(
        f"{API}/folders/{tree['finance'].pk}/connections",
        {"connector": "fakehub", "auth_type": "pat", "name": "Robot", "secret": {"token": value}},
    )
    answer = _refused(response, "token")
    assert answer["errors"]["token"] == [
        "Personal access token must not contain line breaks or other control characters."
    ]
    assert not Connection.objects.exists()
    assert provider.requests == []  # refused before anything was sent


def test_a_secret_with_a_line_break_is_refused_on_replace(api, tree, fakehub, provider):
    connection = make_connection(tree["finance"])
    before = snapshot(tree["finance"])
    response = api.put(f"{API}/connections/{connection.pk}/secret", {"secret": {"token": "a\nb"}})
    _refused(response, "token")
    assert snapshot(tree["finance"]) == before
    assert provider.requests == []


def test_the_pages_refuse_a_secret_with_a_line_break_by_name(client, dev, tree, fakehub, provider):
    client.force_login(dev)
    url = reverse("connection_add_details", args=[tree["finance"].pk, "fakehub", "pat"])
    response = client.post(url, {"name": "Robot", "secret_token": "ghp_a\nb"})
    assert response.status_code == 400
    assert "must not contain line breaks" in response.content.decode()
    assert not Connection.objects.exists()

    connection = make_connection(tree["finance"])
    url = reverse("connection_replace_secret", args=[tree["finance"].pk, connection.pk])
    response = client.post(url, {"secret_token": "a\r\nb"})
    assert response.status_code == 400
    assert "must not contain line breaks" in response.content.decode()
    assert vault.read_secret(connection)["token"] != "a\r\nb"


# --- Paths no route matches ---------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("delete", "/api/v1/connections/abc"),
        ("post", "/api/v1/connections/abc/check"),
        ("put", "/api/v1/no/such/thing"),
        ("patch", "/api/v1/connections/-1"),
        ("get", "/api/v1/connections%0A"),
        ("get", "/api/v1/folders/1/%0Aconnections"),
        ("delete", "/api/v1/connections/1%0A"),
    ],
)
def test_every_unmatched_api_path_answers_the_json_404(db, method, path):
    # As a client with no session: CSRF checks on, as for any automation.
    response = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert response.status_code == 404, (response.status_code, response.content[:200])
    assert body(response)["detail"].startswith("No endpoint /api/v1/")


# --- A body that is not JSON --------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/folders/{finance}/connections"),
        ("patch", "/connections/{connection}"),
        ("put", "/connections/{connection}/secret"),
    ],
)
def test_a_body_that_cannot_be_parsed_answers_400_in_the_error_shape(
    api, tree, fakehub, method, path
):
    connection = make_connection(tree["finance"])
    url = API + path.format(finance=tree["finance"].pk, connection=connection.pk)
    response = getattr(api.client, method)(
        url, "{not json", content_type="application/json", headers=api.headers
    )
    assert response.status_code == 400
    assert body(response) == {"detail": "Cannot parse request body"}


# --- The schema says what the operations answer -------------------------

ERROR = "#/components/schemas/Error"

# Every status each operation may answer (docs/api.md has the same table).
STATUSES = {
    ("get", "/me"): {200, 401, 429},
    ("get", "/settings"): {200, 401, 429},
    ("get", "/folders"): {200, 401, 422, 429},
    ("get", "/folders/{folder_id}/connections"): {200, 401, 403, 404, 422, 429},
    ("post", "/folders/{folder_id}/connections"): {201, 400, 401, 403, 404, 422, 429, 503},
    ("get", "/connections/resolve"): {200, 400, 401, 403, 404, 409, 422, 429},
    ("get", "/credentials"): {200, 400, 401, 403, 404, 409, 422, 429, 503},
    ("get", "/connections/{connection_id}/credentials"): {200, 401, 403, 404, 409, 422, 429, 503},
    ("get", "/connections/{connection_id}"): {200, 401, 403, 404, 429},
    ("patch", "/connections/{connection_id}"): {200, 400, 401, 403, 404, 409, 422, 429, 503},
    ("delete", "/connections/{connection_id}"): {204, 401, 403, 404, 409, 422, 429},
    ("put", "/connections/{connection_id}/secret"): {200, 400, 401, 403, 404, 422, 429, 503},
    ("post", "/connections/{connection_id}/check"): {200, 401, 403, 404, 409, 422, 429},
    ("post", "/connections/{connection_id}/disable"): {200, 401, 403, 404, 429},
    ("post", "/connections/{connection_id}/enable"): {200, 401, 403, 404, 429},
    ("put", "/connections/{connection_id}/default"): {200, 401, 403, 404, 429},
    ("delete", "/connections/{connection_id}/default"): {200, 401, 403, 404, 429},
    ("get", "/folders/{folder_id}/processes"): {200, 401, 403, 404, 422, 429},
    ("post", "/folders/{folder_id}/processes"): {201, 400, 401, 403, 404, 422, 429, 503},
    ("get", "/processes/{process_id}"): {200, 401, 403, 404, 429},
    ("patch", "/processes/{process_id}"): {200, 400, 401, 403, 404, 422, 429, 503},
    ("get", "/connections/{connection_id}/triggers"): {200, 401, 403, 404, 422, 429},
    ("post", "/connections/{connection_id}/triggers"): {201, 400, 401, 403, 404, 409, 422, 429},
    ("get", "/triggers/{trigger_id}"): {200, 401, 403, 404, 429},
    ("delete", "/triggers/{trigger_id}"): {204, 401, 403, 404, 429},
    ("post", "/triggers/{trigger_id}/enable"): {200, 401, 403, 404, 429},
    ("post", "/triggers/{trigger_id}/disable"): {200, 401, 403, 404, 429},
    ("post", "/triggers/{trigger_id}/poll"): {202, 401, 403, 404, 409, 429},
    ("get", "/triggers/{trigger_id}/events"): {200, 401, 403, 404, 422, 429},
    ("get", "/processes/{process_id}/jobs"): {200, 401, 403, 404, 409, 422, 429},
    ("post", "/processes/{process_id}/jobs/claim"): {200, 204, 400, 401, 403, 404, 409, 422, 429},
    ("post", "/jobs/{job_id}/complete"): {200, 400, 401, 403, 404, 409, 422, 429},
    ("post", "/jobs/{job_id}/fail"): {200, 400, 401, 403, 404, 409, 422, 429},
    ("post", "/jobs/{job_id}/extend"): {200, 400, 401, 403, 404, 409, 422, 429},
    ("post", "/jobs/{job_id}/retry-delivery"): {200, 401, 403, 404, 409, 429},
    ("post", "/jobs/{job_id}/replay"): {201, 401, 403, 404, 429},
    ("get", "/solutions"): {200, 401, 422, 429},
    ("get", "/solutions/{solution_id}"): {200, 401, 404, 429},
    ("get", "/solutions/{solution_id}/versions/{number}/package"): {200, 401, 404, 429},
    ("post", "/solutions/packages"): {201, 400, 401, 403, 404, 422, 429},
    ("post", "/solutions/{solution_id}/versions/{number}/preflight"): {
        200,
        400,
        401,
        404,
        422,
        429,
    },
    ("post", "/solutions/{solution_id}/versions/{number}/deployments"): {
        202,
        400,
        401,
        403,
        404,
        422,
        429,
    },
    ("get", "/solutions/{solution_id}/deployments"): {200, 401, 404, 429},
    ("get", "/deployments/{deployment_id}"): {200, 401, 404, 429},
    ("delete", "/deployments/{deployment_id}"): {202, 401, 403, 404, 409, 429},
    ("post", "/deployments/{deployment_id}/upgrade/preflight"): {
        200,
        400,
        401,
        403,
        404,
        422,
        429,
    },
    ("post", "/deployments/{deployment_id}/upgrade"): {202, 400, 401, 403, 404, 409, 422, 429},
    ("patch", "/deployments/{deployment_id}/configuration"): {
        202,
        400,
        401,
        403,
        404,
        409,
        422,
        429,
    },
}


@pytest.fixture
def schema(client, db):
    return client.get(f"{API}/openapi.json").json()


def test_the_schema_lists_every_status_with_its_shape(schema):
    found = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            found[(method, path.removeprefix(API))] = operation["responses"]
    assert set(found) == set(STATUSES)
    for where, responses in found.items():
        assert {int(status) for status in responses} == STATUSES[where], where
        for status, answer in responses.items():
            if int(status) >= 400:
                shape = answer["content"]["application/json"]["schema"]
                assert shape == {"$ref": ERROR}, (where, status)
            if int(status) in (429, 503):
                assert "Retry-After" in answer.get("headers", {}), (where, status)


def test_string_fields_refused_when_empty_say_so(schema):
    shapes = schema["components"]["schemas"]
    create = shapes["ConnectionCreate"]["properties"]
    for field in ("connector", "auth_type", "name"):
        assert create[field].get("minLength") == 1, field
    edit = shapes["ConnectionEdit"]["properties"]["name"]
    assert any(option.get("minLength") == 1 for option in edit.get("anyOf", [edit]))


def test_every_string_in_a_request_refuses_nul_in_the_schema(schema):
    """The shared rule is in the schema too, so that a generator knows it."""

    def strings(node):
        if isinstance(node, dict):
            if node.get("type") == "string":
                yield node
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)

    shapes = schema["components"]["schemas"]
    inputs = [shapes[name] for name in ("ConnectionCreate", "ConnectionEdit", "SecretReplace")]
    for operations in schema["paths"].values():
        for operation in operations.values():
            inputs.extend(p["schema"] for p in operation.get("parameters", ()))
    found = [node for shape in inputs for node in strings(shape)]
    assert found
    for node in found:
        assert node.get("pattern") == "^[^\\u0000]*$", node


def test_a_stored_secret_with_a_line_break_answers_409_when_it_would_be_sent(api, tree, fakehub):
    """Stored before secrets were checked: not a server error, and not sent."""
    connection = make_connection(tree["finance"], secret={"token": "ghp_old\nX-Injected: 1"})
    response = api.get(f"{API}/connections/{connection.pk}/credentials")
    assert response.status_code == 409
    assert "replace it" in body(response)["detail"]
