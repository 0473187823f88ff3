"""The polling engine (connections/engine.py): a batch of health checks
costs the same statements whatever its size; results are written grouped;
a provider's Retry-After holds the connection, and the host when the
connector's limits are per app. Over real HTTP to the fake provider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import engine
from connections.actions import check, create
from connections.catalog import get_catalog
from connections.models import Connection, ConnectionState, HealthCheck, ProviderHold
from tests.connections.fake_provider import DEFINITION, GOOD_TOKEN
from tests.factories import FolderFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fakeorg(provider, fakehub, tmp_path, settings):
    """FakeHub again, as a connector whose limits are per app (rate_limit: app)."""
    folder = tmp_path / "connectors"
    text = DEFINITION.format(base=provider.url).replace("key: fakehub", "key: fakeorg", 1)
    (folder / "fakeorg.yaml").write_text(text + "rate_limit: app\n")
    get_catalog.cache_clear()
    yield get_catalog().get("fakeorg")
    get_catalog.cache_clear()


def make(connector, folder, count: int, prefix: str = "c") -> list[Connection]:
    made = [
        create.create_secret_connection(
            folder=folder,
            connector=connector,
            auth=connector.auth_type("pat"),
            name=f"{prefix}{i}",
            description="",
            fields={},
            secret={"token": GOOD_TOKEN},
            created_by=None,
        )
        for i in range(count)
    ]
    due = timezone.now() - timedelta(seconds=1)
    Connection.objects.filter(pk__in=[c.pk for c in made]).update(next_check_at=due)
    return made


def check_batch(ids) -> int:
    with engine.Batch() as batch:
        return check.check_connections(ids, batch)


def test_a_batch_of_checks_costs_the_same_statements_whatever_its_size(fakehub, provider):
    folder = FolderFactory()
    small = [c.pk for c in make(fakehub, folder, 2, "small")]
    large = [c.pk for c in make(fakehub, folder, 9, "large")]
    with engine.Batch() as batch, CaptureQueriesContext(db) as two:
        assert check.check_connections(small, batch) == 2
    with engine.Batch() as batch, CaptureQueriesContext(db) as nine:
        assert check.check_connections(large, batch) == 9
    assert len(two) == len(nine) <= 8  # read, lock, update, 2 inserts (+ savepoint/commit)
    assert HealthCheck.objects.filter(connection_id__in=large).count() == 9 + 9  # + at creation
    for row in Connection.objects.filter(pk__in=large):
        assert row.state == ConnectionState.CONNECTED and row.check_queued_until is None
        assert row.next_check_at > timezone.now() + timedelta(seconds=290)


def test_a_batch_checks_only_what_is_still_due_and_clears_every_queued_mark(fakehub, provider):
    folder = FolderFactory()
    due, later = make(fakehub, folder, 2)
    queued = timezone.now() + timedelta(minutes=5)
    Connection.objects.filter(pk=later.pk).update(next_check_at=timezone.now() + timedelta(hours=1))
    Connection.objects.update(check_queued_until=queued)
    sent = len(provider.requests)
    assert check_batch([due.pk, later.pk, 999_999]) == 1
    assert len(provider.requests) == sent + 1
    assert not Connection.objects.filter(check_queued_until__isnull=False).exists()


def test_update_grouped_writes_one_statement_per_distinct_set_of_values(fakehub, provider):
    rows = make(fakehub, FolderFactory(), 4)
    for row in rows:
        row.last_error = "same"
    rows[3].last_error = "other"
    with CaptureQueriesContext(db) as queries:
        assert engine.update_grouped(Connection.objects, rows, ["last_error"]) == 4
    assert len(queries) == 2
    assert sorted(Connection.objects.values_list("last_error", flat=True)) == [
        "other",
        "same",
        "same",
        "same",
    ]


def test_a_retry_after_holds_the_connections_next_check(fakehub, provider):
    (robot,) = make(fakehub, FolderFactory(), 1)
    provider.fail_with, provider.fail_headers = 429, {"Retry-After": "900"}
    assert check_batch([robot.pk]) == 1
    robot.refresh_from_db()
    assert robot.next_check_at >= timezone.now() + timedelta(seconds=890)
    assert robot.state == ConnectionState.CONNECTED  # one 429 is not a broken connection
    assert "rate limiting" in robot.last_error
    assert not ProviderHold.objects.exists()  # FakeHub's limits are per connection


def test_a_per_app_limit_holds_every_connection_on_the_host(fakeorg, fakehub, provider):
    folder = FolderFactory()
    first, second = make(fakeorg, folder, 2, "org")
    provider.fail_with, provider.fail_headers = 429, {"Retry-After": "600"}
    assert check_batch([first.pk]) == 1
    hold = ProviderHold.objects.get()
    assert hold.host == "localhost" and hold.until >= timezone.now() + timedelta(seconds=590)

    # The provider would answer now, but nothing is sent to the host before the hold ends.
    provider.fail_with, provider.fail_headers = 0, {}
    sent = len(provider.requests)
    assert check_batch([second.pk]) == 1
    assert len(provider.requests) == sent
    second.refresh_from_db()
    assert second.next_check_at >= hold.until
    assert "limiting this portal's requests to localhost" in second.last_error
    assert HealthCheck.objects.filter(connection=second).latest("pk").status_code == 429

    # Once it has passed, the host is checked again.
    ProviderHold.objects.update(until=timezone.now() - timedelta(seconds=1))
    Connection.objects.filter(pk=second.pk).update(next_check_at=timezone.now())
    assert check_batch([second.pk]) == 1
    assert len(provider.requests) == sent + 1
    second.refresh_from_db()
    assert second.state == ConnectionState.CONNECTED and second.last_error == ""


def test_check_now_is_a_batch_of_one(fakehub, provider):
    (robot,) = make(fakehub, FolderFactory(), 1)
    result = check.check_connection(connection=robot)
    assert result.ok and robot.last_checked_at is not None
    Connection.objects.filter(pk=robot.pk).delete()
    with pytest.raises(Connection.DoesNotExist):
        check.check_connection(connection=robot)
