import pytest

from connections import vault
from connections.models import Connection, ConnectionState
from portal.models import AuditRecord
from tests.factories import assign


@pytest.fixture
def github_pat(tree, make_user):
    dev = make_user("dev")
    assign(dev, tree["finance"], "Automation Developer")
    connection = Connection.objects.create(
        folder=tree["finance"],
        connector_key="github",
        auth_type="pat",
        name="GitHub bot",
        state=ConnectionState.CONNECTED,
    )
    vault.store_secret(connection, {"token": "ghp_smoketestsecretvalue"})
    return dev, connection


def test_credentials_smoke(github_pat, api_for):
    dev, connection = github_pat
    api = api_for(dev)
    me = api.get("/api/v1/me")
    assert me.status_code == 200, me.content
    answer = api.get(f"/api/v1/connections/{connection.pk}/credentials", headers={"X-Job-Id": "j1"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["secret"] == {"token": "ghp_smoketestsecretvalue"}
    assert body["headers"]["Authorization"] == "Bearer ghp_smoketestsecretvalue"
    record = AuditRecord.objects.get(action="credentials.read")
    assert record.job_id == "j1"
    named = api.get("/api/v1/credentials", {"folder": "Shared/Finance", "connector": "github"})
    assert named.status_code == 200, named.content
    folders = api.get("/api/v1/folders")
    assert folders.status_code == 200, folders.content
    listing = api.get(f"/api/v1/folders/{connection.folder_id}/connections")
    assert listing.status_code == 200, listing.content
    assert listing.json()["items"][0]["name"] == "GitHub bot"
    assert api.get("/api/v1/openapi.json").status_code == 200
