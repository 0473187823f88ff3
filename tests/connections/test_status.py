"""A connection's status (its state, or Disabled) and the tenant's health
overview, computed without a request (connections/status.py)."""

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from connections import status
from connections.models import Connection, ConnectionState, HealthCheck
from tests.factories import ConnectionFactory

NEEDS_RECONNECT = ConnectionState.NEEDS_RECONNECT
MISCONFIGURED = ConnectionState.MISCONFIGURED
DEGRADED = ConnectionState.DEGRADED


@pytest.fixture
def shared(tree):
    """One connection of every status in a shared folder, two of them
    degraded (more failures in a row first)."""
    folder = tree["finance"]
    made = {
        "ok": ConnectionFactory(folder=folder, name="Ledger"),
        "new": ConnectionFactory(folder=folder, name="New", state=ConnectionState.NOT_CONNECTED),
        "slow": ConnectionFactory(folder=folder, name="A slow one", state=DEGRADED),
        "down": ConnectionFactory(
            folder=folder,
            name="Z down",
            state=DEGRADED,
            consecutive_failures=4,
            last_error="Sandbox answered 503 Service Unavailable.",
        ),
        "gone": ConnectionFactory(folder=folder, name="Gone", state=NEEDS_RECONNECT),
        "wrong": ConnectionFactory(folder=folder, name="Wrong", state=MISCONFIGURED),
        "off": ConnectionFactory(
            folder=folder, name="Off", state=NEEDS_RECONNECT, is_enabled=False
        ),
    }
    return made


def in_finance(tree):
    return Connection.objects.filter(folder=tree["finance"])


def test_with_status_reads_disabled_apart_from_the_state(tree, shared):
    connections = in_finance(tree)
    assert set(status.with_status(connections, "disabled")) == {shared["off"]}
    assert set(status.with_status(connections, NEEDS_RECONNECT)) == {shared["gone"]}
    assert set(status.with_status(connections, "nonsense")) == set(shared.values())
    assert set(status.needing_attention(connections)) == {
        shared[name] for name in ("slow", "down", "gone", "wrong")
    }


def test_the_overview_counts_by_status_and_lists_the_worst_first(tree, shared):
    with CaptureQueriesContext(db) as captured:
        overview = status.health_overview(in_finance(tree))
        listed = list(overview.listed)
    assert len(captured) == 2  # the counts, the list
    assert (overview.status, overview.label) == ("", "")
    assert [(row.state, row.label, row.count) for row in overview.counts] == [
        (NEEDS_RECONNECT, "Needs reconnect", 1),
        (MISCONFIGURED, "Misconfigured", 1),
        (DEGRADED, "Degraded", 2),
        (ConnectionState.CONNECTED, "Connected", 1),
        (ConnectionState.NOT_CONNECTED, "Not yet connected", 1),
        ("disabled", "Disabled", 1),
    ]
    assert [connection.name for connection in listed] == ["Gone", "Wrong", "Z down", "A slow one"]


def test_the_overview_lists_the_status_asked_for(tree, shared):
    disabled = status.health_overview(in_finance(tree), "disabled")
    assert (disabled.status, disabled.label) == ("disabled", "Disabled")
    assert list(disabled.listed) == [shared["off"]]
    unknown = status.health_overview(in_finance(tree), "nonsense")
    assert unknown.status == "" and len(unknown.listed) == 4


def test_trouble_anchors_use_the_latest_checks_status_code(tree, shared):
    slow = shared["slow"]
    HealthCheck.objects.create(connection=slow, ok=False, status_code=200, error="Old.")
    HealthCheck.objects.create(connection=slow, ok=False, status_code=429, error="Busy.")
    down = shared["down"]
    HealthCheck.objects.create(connection=down, ok=False, status_code=503, error=down.last_error)
    listed = {c.name: c for c in status.health_overview(in_finance(tree)).listed}

    def anchor(name):
        row = listed[name]
        return status.trouble_anchor(row, status_code=row.last_status_code, ok=bool(row.last_ok))

    assert listed["A slow one"].last_status_code == 429
    assert anchor("A slow one") == "rate-limited"
    assert anchor("Z down") == "provider-error"
    assert anchor("Gone") == "rejected-credentials"
    assert anchor("Wrong") == "forbidden"
    # Nothing to explain for a connection that needs no attention.
    assert status.trouble_anchor(shared["ok"], status_code=401) == ""
    assert status.trouble_anchor(shared["off"], status_code=401) == ""
