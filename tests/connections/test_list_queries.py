"""The Connections tab costs a constant number of queries, at most 14 (with
the Solutions link's check in the page shell and the connections still to
authenticate), with 10,000 connections in the folder, whatever the filters
and sort."""

import pytest
from django.urls import reverse

from connections.models import Connection, ConnectionState
from tests.factories import assign
from tests.queries import page_queries

TOTAL = 10_000
STATES = [ConnectionState.CONNECTED, ConnectionState.DEGRADED, ConnectionState.NEEDS_RECONNECT]


@pytest.fixture
def big_folder(tree, make_user):
    folder = tree["finance"]
    creator = make_user("creator")
    Connection.objects.bulk_create(
        [
            Connection(
                folder=folder,
                connector_key="github" if i % 2 else "sandbox",
                name=f"Connection {i:05d}",
                auth_type="pat",
                state=STATES[i % 3],
                is_enabled=i % 10 != 0,
                account_identity=f"robot{i}@example.com",
                created_by=creator,
            )
            for i in range(TOTAL)
        ],
        batch_size=2000,
    )
    # One connection with a unique name, for a one-row page.
    Connection.objects.filter(name="Connection 00007").update(name="Unique payroll robot")
    return folder


def _queries(client, folder, **params) -> tuple[int, int]:
    count, response = page_queries(client, reverse("folder_connections", args=[folder.pk]), params)
    assert response.status_code == 200
    rows = response.content.decode().count(f'href="/folders/{folder.pk}/connections/')
    return count, rows


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "-updated"},
        {"sort": "state", "state": "degraded"},
        {"connector": "github", "sort": "-name"},
        {"q": "robot1", "sort": "connector"},
        {"state": "disabled"},
        {"page": "100"},
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "plain",
)
def test_constant_queries(client, make_user, big_folder, params):
    user = make_user("viewer")
    assign(user, big_folder, "Automation Developer")
    client.force_login(user)
    one_row, shown = _queries(client, big_folder, q="Unique payroll")
    assert shown >= 1
    full_page, shown_full = _queries(client, big_folder, **params)
    assert one_row == full_page
    assert full_page <= 14
    assert shown_full >= 50
