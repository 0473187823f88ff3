"""What one refresh costs the database, and what the fewer statements still
guarantee: the connection is read once with its credential; the lease is
taken only if nothing changed since that read; the answer is stored with one
UPDATE of the connection that checks the lease, records the expiry and hands
the lease back (and clears the task's queued mark); a lost lease writes
nothing. The refresh task takes several connections when the sweep finds
many due; one failing does not stop the others."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import oauth, refresh, tasks, vault
from connections.models import Connection, ConnectionEvent, ConnectionState, OAuthApp
from connections.oauth_apps import set_portal_app
from tests.factories import ConnectionFactory, FolderFactory

pytestmark = pytest.mark.django_db(transaction=True)

OLD = {"access_token": "old-access", "refresh_token": "old-refresh", "token_type": "Bearer"}
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _due(name: str = "c", folder=None, seconds: int = 30) -> Connection:
    return ConnectionFactory(
        folder=folder or FolderFactory(),
        sandbox=True,
        name=name,
        auth_type="oauth2_authorization_code",
        token_expires_at=timezone.now() + timedelta(seconds=seconds),
        secret={**OLD, "refresh_token": f"old-refresh-{name}"},
    )


def _answer(connection: Connection) -> dict:
    expires = int((timezone.now() + timedelta(hours=1)).timestamp())
    return {
        "access_token": f"new-access-{connection.pk}",
        "refresh_token": f"new-refresh-{connection.pk}",
        "token_type": "Bearer",
        "expires_at": expires,
        "scope": "profile",
    }


@pytest.fixture
def provider(monkeypatch):
    """The token endpoint, as ``oauth.request_refresh``: answers with a new
    token set (or what ``answers`` says for a connection); records the calls."""
    calls: list[int] = []
    answers: dict = {}

    def request_refresh(connection, secret):
        calls.append(connection.pk)
        answer = answers.get(connection.pk)
        if callable(answer):
            return answer(connection, secret)
        if isinstance(answer, Exception):
            raise answer
        return _answer(connection)

    monkeypatch.setattr(oauth, "request_refresh", request_refresh)
    return calls, answers


def _statements(queries) -> list[str]:
    return [q["sql"] for q in queries if not q["sql"].upper().startswith(TRANSACTION_CONTROL)]


def _refreshed_events(connection: Connection) -> int:
    return ConnectionEvent.objects.filter(
        connection=connection, kind=ConnectionEvent.Kind.REFRESHED
    ).count()


def test_a_refresh_reads_once_and_writes_in_one_transaction(provider):
    connection = _due()
    Connection.objects.filter(pk=connection.pk).update(
        refresh_queued_until=timezone.now() + timedelta(minutes=3)
    )
    with CaptureQueriesContext(db) as queries:
        tasks.refresh_connection_task.run(connection.pk)
    statements = _statements(queries)
    # Read with the credential; the lease; then the connection's UPDATE, the
    # new ciphertext and the event, committed together.
    assert len(statements) == 5, "\n".join(statements)

    connection.refresh_from_db()
    assert provider[0] == [connection.pk]
    assert vault.read_secret(connection) == _answer(connection)
    assert connection.token_expires_at == oauth.expiry_of(_answer(connection))
    assert refresh.is_fresh(connection)
    assert connection.refresh_lease_owner == "" and connection.refresh_lease_until is None
    assert connection.refresh_queued_until is None
    assert _refreshed_events(connection) == 1
    # The history's row carries the new expiry as a field, not only in words.
    event = connection.events.get(kind=ConnectionEvent.Kind.REFRESHED)
    assert event.token_expires_at == connection.token_expires_at


def test_a_fresh_token_costs_one_query(provider):
    connection = _due(seconds=3600)
    with CaptureQueriesContext(db) as queries:
        secret = refresh.refresh_connection(connection.pk)
    assert len(_statements(queries)) == 1
    assert secret["refresh_token"] == "old-refresh-c"
    assert provider[0] == []


def test_a_refresh_outside_the_task_leaves_the_queued_mark(provider):
    connection = _due()
    queued = timezone.now() + timedelta(minutes=3)
    Connection.objects.filter(pk=connection.pk).update(refresh_queued_until=queued)
    refresh.refresh_connection(connection.pk)
    connection.refresh_from_db()
    assert refresh.is_fresh(connection)
    assert connection.refresh_queued_until == queued  # the queued task clears it


def test_a_lost_lease_writes_nothing(provider):
    connection = _due()
    answers = provider[1]

    def lease_lost_meanwhile(conn, secret):
        # The lease ran out while the provider answered, and someone took it.
        Connection.objects.filter(pk=conn.pk).update(refresh_lease_owner="someone-else")
        return _answer(conn)

    answers[connection.pk] = lease_lost_meanwhile
    expires = Connection.objects.get(pk=connection.pk).token_expires_at
    with pytest.raises(refresh.RefreshError, match="longer than its lease") as raised:
        refresh.refresh_connection(connection.pk)
    assert raised.value.transient
    connection.refresh_from_db()
    assert vault.read_secret(connection)["refresh_token"] == "old-refresh-c"
    assert connection.token_expires_at == expires
    assert connection.refresh_lease_owner == "someone-else"  # theirs: not released by us
    assert _refreshed_events(connection) == 0


def test_refreshed_between_the_read_and_the_lease(provider, monkeypatch):
    """Another refresh stored its tokens after our read: the lease is not
    taken on the stale read, and its tokens are the answer."""
    connection = _due()
    theirs = {**_answer(connection), "access_token": "theirs"}
    take_lease = refresh._take_lease

    def another_refresh_first(conn, owner):
        if conn.token_version == 0:
            # Stored as a refresh stores it: the version moves; the expiry
            # too, but even an expiry to the same second would not do.
            vault.store_secret(conn, theirs)
            Connection.objects.filter(pk=conn.pk).update(
                token_expires_at=oauth.expiry_of(theirs), token_version=F("token_version") + 1
            )
        return take_lease(conn, owner)

    monkeypatch.setattr(refresh, "_take_lease", another_refresh_first)
    assert refresh.refresh_connection(connection.pk) == theirs
    assert provider[0] == []
    connection.refresh_from_db()
    assert connection.refresh_lease_owner == ""


def test_a_refresh_stored_within_the_same_second_moves_the_version(provider, monkeypatch):
    """Two refreshes within one second store the same expiry (it is kept to
    the second). A caller who read the row before another's refresh stored
    must not take the lease on that read and spend the old refresh token
    again: the version moved, so it takes the other's token set."""
    connection = _due()
    same_second = int(connection.token_expires_at.timestamp())
    Connection.objects.filter(pk=connection.pk).update(
        token_expires_at=datetime.fromtimestamp(same_second, UTC)
    )
    provider[1][connection.pk] = lambda conn, secret: {**_answer(conn), "expires_at": same_second}
    take_lease = refresh._take_lease
    theirs: list[dict] = []

    def another_refresh_first(conn, owner):
        if not theirs:
            theirs.append({})  # the other caller, start to end, before this one's lease
            theirs[0] = refresh.refresh_connection(conn.pk)
        return take_lease(conn, owner)

    monkeypatch.setattr(refresh, "_take_lease", another_refresh_first)
    assert refresh.refresh_connection(connection.pk) == theirs[0]
    assert provider[0] == [connection.pk]  # one token request: the old token spent once
    connection.refresh_from_db()
    assert connection.token_expires_at == datetime.fromtimestamp(same_second, UTC)
    assert connection.token_version == 1


def test_a_waiter_takes_the_refresh_it_waited_for_even_if_short_lived(provider, monkeypatch):
    """The token's lifetime (20 s) is below the lead time (300 s): nothing
    stored is ever fresh by the lead alone. A caller that waited while
    another held the lease takes that one's result (the version moved)
    instead of refreshing again."""
    connection = _due()
    Connection.objects.filter(pk=connection.pk).update(
        refresh_lease_owner="another", refresh_lease_until=timezone.now() + timedelta(minutes=1)
    )
    theirs = {**_answer(connection), "access_token": "theirs", "expires_in": 20}

    def the_other_finishes(seconds):
        if Connection.objects.filter(pk=connection.pk, token_version=0).exists():
            vault.store_secret(connection, theirs)
            Connection.objects.filter(pk=connection.pk).update(
                token_expires_at=timezone.now() + timedelta(seconds=20),
                token_version=F("token_version") + 1,
                refresh_lease_owner="",
                refresh_lease_until=None,
            )

    monkeypatch.setattr(refresh.time, "sleep", the_other_finishes)
    assert refresh.refresh_connection(connection.pk) == theirs
    assert provider[0] == []


def test_the_lead_is_at_most_half_the_lifetime(provider, settings):
    settings.PORTAL_REFRESH_LEAD_SECONDS = 300
    now = timezone.now()
    short = Connection(token_expires_at=now + timedelta(seconds=15), token_lifetime_seconds=20)
    assert refresh.is_fresh(short)  # lead 10 s
    short.token_expires_at = now + timedelta(seconds=9)
    assert not refresh.is_fresh(short)
    unknown = Connection(token_expires_at=now + timedelta(seconds=200))
    assert not refresh.is_fresh(unknown)  # lifetime unknown: the whole lead
    long = Connection(token_expires_at=now + timedelta(seconds=400), token_lifetime_seconds=3600)
    assert refresh.is_fresh(long)
    long.token_expires_at = now + timedelta(seconds=299)
    assert not refresh.is_fresh(long)


def test_a_refresh_stores_the_lifetime_the_provider_gave(provider):
    connection = _due()
    provider[1][connection.pk] = lambda conn, secret: {**_answer(conn), "expires_in": 20}
    refresh.refresh_connection(connection.pk)
    connection.refresh_from_db()
    assert connection.token_lifetime_seconds == 20
    assert connection.token_version == 1


def test_needs_reconnect_between_the_read_and_the_lease(provider, monkeypatch):
    connection = _due()
    take_lease = refresh._take_lease

    def broken_first(conn, owner):
        Connection.objects.filter(pk=conn.pk).update(
            state=ConnectionState.NEEDS_RECONNECT, last_error="Refused."
        )
        return take_lease(conn, owner)

    monkeypatch.setattr(refresh, "_take_lease", broken_first)
    with pytest.raises(refresh.RefreshError, match="needs reconnecting"):
        refresh.refresh_connection(connection.pk)
    assert provider[0] == []
    assert Connection.objects.get(pk=connection.pk).refresh_lease_owner == ""


def test_force_refreshes_a_fresh_token_once(provider):
    connection = _due(seconds=3600)
    secret = refresh.refresh_connection(connection.pk, force=True)
    assert secret == _answer(connection)
    assert provider[0] == [connection.pk]
    assert _refreshed_events(connection) == 1


def test_several_connections_per_task_one_failing(provider, monkeypatch, caplog):
    folder = FolderFactory()
    first, flaky, broken, last = (_due(name, folder) for name in ("a", "b", "c", "d"))
    calls, answers = provider
    answers[flaky.pk] = oauth.OAuthFlowError("Unavailable.", transient=True, retry_after=30)
    answers[broken.pk] = RuntimeError("Unexpected.")  # a bug, not the provider's answer
    queued = timezone.now() + timedelta(minutes=3)
    Connection.objects.update(refresh_queued_until=queued)
    retried = []
    monkeypatch.setattr(
        tasks.refresh_connection_task,
        "apply_async",
        lambda args, **options: retried.append((args, options)),
    )

    tasks.refresh_connection_task.run(first.pk, flaky.pk, broken.pk, last.pk)

    assert calls == [first.pk, flaky.pk, broken.pk, last.pk]
    for connection in (first, last):
        connection.refresh_from_db()
        assert refresh.is_fresh(connection) and _refreshed_events(connection) == 1
    # The transient failure is retried alone, counted as a first retry.
    [(args, options)] = retried
    assert args == (flaky.pk,) and options["retries"] == 1 and options["countdown"] >= 30
    assert f"Refreshing connection {broken.pk} failed." in caplog.text
    # It stays queued until a little after its retry is due: the sweep
    # starts no second retry chain; the others are done and free.
    flaky.refresh_from_db()
    assert flaky.refresh_queued_until >= timezone.now() + timedelta(seconds=options["countdown"])
    others = Connection.objects.exclude(pk=flaky.pk)
    assert set(others.values_list("refresh_queued_until", flat=True)) == {None}
    assert Connection.objects.exclude(refresh_lease_owner="").count() == 0


def test_one_connection_per_task_retries_itself(provider, monkeypatch):
    connection = _due()
    provider[1][connection.pk] = oauth.OAuthFlowError("Unavailable.", transient=True)
    retries = []

    def fake_retry(*, countdown, max_retries):
        retries.append(countdown)
        return RuntimeError("retry scheduled")

    monkeypatch.setattr(tasks.refresh_connection_task, "retry", fake_retry)
    with pytest.raises(RuntimeError, match="retry scheduled"):
        tasks.refresh_connection_task.run(connection.pk)
    assert len(retries) == 1


@pytest.mark.parametrize(
    ("due", "expected"), [(1, 1), (99, 1), (100, 2), (499, 9), (1250, 25), (10_000, 25)]
)
def test_refreshes_per_task(due, expected):
    assert tasks.per_task(due) == expected


def test_the_sweep_sends_a_few_per_task_when_many_are_due(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.PORTAL_REFRESH_BATCH = 1000
    folder = FolderFactory()
    Connection.objects.bulk_create(
        [
            Connection(
                folder=folder,
                connector_key="sandbox",
                name=f"c{i}",
                auth_type="oauth2_authorization_code",
                state=ConnectionState.CONNECTED,
                token_expires_at=timezone.now() + timedelta(seconds=10),
            )
            for i in range(130)
        ]
    )
    sent = []
    monkeypatch.setattr(
        tasks.refresh_connection_task, "apply_async", lambda args, **options: sent.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.refresh_sweep.run() == 130
    assert [len(args) for args in sent] == [2] * 65
    assert sorted(pk for args in sent for pk in args) == sorted(
        Connection.objects.values_list("pk", flat=True)
    )


def test_a_task_reads_the_portal_app_once(settings):
    set_portal_app("sandbox", client_id="portal-app", client_secret="s3cret-value")
    with CaptureQueriesContext(db) as queries, oauth.portal_apps_read_once():
        first = oauth._portal_app("sandbox")
        second = oauth._portal_app("sandbox")
    assert first == second and first.client_id == "portal-app"
    assert len([q for q in queries if OAuthApp._meta.db_table in q["sql"]]) == 1
    with CaptureQueriesContext(db) as queries:
        oauth._portal_app("sandbox")
        oauth._portal_app("sandbox")
    assert len([q for q in queries if OAuthApp._meta.db_table in q["sql"]]) == 2
