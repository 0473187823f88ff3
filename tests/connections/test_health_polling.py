"""Health polling: the sweep picks due checks with a constant number of
queries; the typed status has hysteresis; people hear once per change of
state; disabled connections are never checked; the polling interval respects
the tenant-wide minimum; OAuth tokens about to expire are refreshed before
the check; a deactivated authenticator's folder administrators are told; a
PAT with a known expiry warns ahead of it.

PAT connections talk to the fake provider over real HTTP (stopped to be
unreachable); OAuth connections to the Sandbox authorization server served by
the live server."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import tasks, validation, vault
from connections.actions import check, create, credentials, details, lifecycle
from connections.models import Connection, ConnectionEvent, ConnectionState, HealthCheck
from portal.celery import app
from portal.models import TenantSettings
from tests.connections.fake_provider import GOOD_TOKEN, WEAK_TOKEN
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import FolderFactory, assign

pytestmark = pytest.mark.django_db(transaction=True)


# --- Helpers -------------------------------------------------------------------


@pytest.fixture
def developer(make_user, tree):
    user = make_user("dev")
    assign(user, tree["finance"], "Automation Developer")
    return user


@pytest.fixture
def folder_admin(make_user, tree):
    user = make_user("boss")
    assign(user, tree["shared"], "Folder Administrator")
    return user


def make_pat(fakehub, folder, user, name="Robot", token=GOOD_TOKEN) -> Connection:
    return create.create_secret_connection(
        folder=folder,
        connector=fakehub,
        auth=fakehub.auth_type("pat"),
        name=name,
        description="",
        fields={},
        secret={"token": token},
        created_by=user,
    )


@pytest.fixture
def robot(fakehub, tree, developer, folder_admin):
    """A PAT connection in a shared folder, authenticated by dev; boss
    administers the folder."""
    return make_pat(fakehub, tree["finance"], developer)


def check_now(connection: Connection):
    result = check.check_connection(connection=connection)
    connection.refresh_from_db()
    return result


def set_minimum(seconds: int) -> None:
    tenant = TenantSettings.load()
    tenant.min_polling_interval_seconds = seconds
    tenant.save()


def subjects(mailoutbox) -> list[str]:
    return [message.subject for message in mailoutbox]


# --- Scheduling ------------------------------------------------------------------


def test_next_check_is_last_check_plus_interval(robot):
    assert robot.polling_interval_seconds == 300  # the connector's default
    assert robot.next_check_at == robot.last_checked_at + timedelta(seconds=300)
    check_now(robot)
    assert robot.next_check_at == robot.last_checked_at + timedelta(seconds=300)
    details.edit_connection(
        connection=robot,
        name=robot.name,
        description="",
        polling_interval_seconds=900,
        fields={},
        actor=None,
    )
    robot.refresh_from_db()
    assert robot.next_check_at == robot.last_checked_at + timedelta(seconds=900)


@pytest.fixture
def enqueued(monkeypatch):
    """The checks the sweep hands to the broker (after commit)."""
    sent = []
    monkeypatch.setattr(
        tasks.check_connections_task,
        "apply_async",
        lambda args, countdown: sent.append((args, countdown)),
    )
    return sent


def test_sweep_enqueues_due_checks_once(robot, provider, enqueued, settings):
    settings.PORTAL_HEALTH_JITTER_SECONDS = 30
    sent = enqueued
    assert tasks.health_sweep.run() == 0  # not due yet
    Connection.objects.filter(pk=robot.pk).update(next_check_at=timezone.now())
    assert tasks.health_sweep.run() == 1
    assert sent == [((robot.pk,), sent[0][1])]
    assert 0 <= sent[0][1] <= 30
    robot.refresh_from_db()
    assert robot.check_queued_until > timezone.now()
    assert tasks.health_sweep.run() == 0  # queued: not enqueued again
    assert len(sent) == 1

    # The worker runs it: one check, the next one scheduled, the mark cleared.
    checks_before = HealthCheck.objects.filter(connection=robot).count()
    tasks.check_connections_task.run(robot.pk)
    robot.refresh_from_db()
    assert HealthCheck.objects.filter(connection=robot).count() == checks_before + 1
    assert robot.check_queued_until is None
    assert robot.next_check_at > timezone.now() + timedelta(seconds=290)
    # Delivered twice: no longer due, so no second check.
    tasks.check_connections_task.run(robot.pk)
    assert HealthCheck.objects.filter(connection=robot).count() == checks_before + 1


def _many(folder, count, *, due, tag="", **extra):
    now = timezone.now()
    Connection.objects.bulk_create(
        [
            Connection(
                folder=folder,
                connector_key="fakehub",
                name=f"c-{due}-{i}-{extra.get('is_enabled', True)}{tag}",
                auth_type="pat",
                state=ConnectionState.CONNECTED,
                next_check_at=now - timedelta(seconds=5) if due else now + timedelta(hours=1),
                **extra,
            )
            for i in range(count)
        ]
    )


def test_sweep_queries_do_not_grow_with_connections_not_due(settings, enqueued):
    settings.PORTAL_HEALTH_BATCH = 50
    folder = FolderFactory()
    _many(folder, 3, due=True)
    with CaptureQueriesContext(db) as small:
        assert tasks.health_sweep.run() == 3
    assert sum(len(args) for args, _ in enqueued) == 3
    Connection.objects.update(check_queued_until=None)
    _many(folder, 2000, due=False)
    _many(folder, 500, due=True, is_enabled=False)  # disabled: never checked
    with CaptureQueriesContext(db) as large:
        assert tasks.health_sweep.run() == 3
    assert len(large) == len(small)
    assert sum(len(args) for args, _ in enqueued) == 6
    # At most a batch per sweep, most overdue first; the next sweep takes the rest.
    Connection.objects.update(check_queued_until=None)
    _many(folder, 60, due=True, tag="-more")
    assert tasks.health_sweep.run() == 50
    assert tasks.health_sweep.run() == 13
    assert tasks.health_sweep.run() == 0


def test_sweep_uses_the_partial_index_on_postgresql():
    if db.vendor != "postgresql":
        pytest.skip("the query plan is PostgreSQL's")
    with db.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        query = tasks.due_for_check().values("pk")[:500]
        plan = query.explain()
        cursor.execute("SET enable_seqscan = on")
    assert "connection_check_due" in plan


def test_beat_runs_the_health_sweep(settings):
    entry = app.conf.beat_schedule["health-sweep"]
    assert entry["task"] == tasks.health_sweep.name == "connections.tasks.health_sweep"
    assert entry["schedule"] == float(settings.PORTAL_HEALTH_SWEEP_SECONDS)


def test_check_now_clears_its_queued_mark_with_the_result(robot, provider):
    """A recorded check clears the mark in the UPDATE that records it; a
    check that could not run (disabled meanwhile) clears it alone."""
    soon = timezone.now() + timedelta(minutes=5)
    Connection.objects.filter(pk=robot.pk).update(check_queued_until=soon)
    with CaptureQueriesContext(db) as recorded:
        tasks.check_connection_task.run(robot.pk)
    robot.refresh_from_db()
    assert robot.check_queued_until is None and robot.health_checks.exists()
    Connection.objects.filter(pk=robot.pk).update(check_queued_until=soon, is_enabled=False)
    with CaptureQueriesContext(db) as skipped:
        tasks.check_connection_task.run(robot.pk)
    robot.refresh_from_db()
    assert robot.check_queued_until is None
    # Skipped: the read and the clearing, nothing more.
    assert len(skipped.captured_queries) == 2
    Connection.objects.filter(pk=robot.pk).update(check_queued_until=soon, is_enabled=True)
    with CaptureQueriesContext(db) as again:
        tasks.check_connection_task.run(robot.pk)
    assert len(again.captured_queries) == len(recorded.captured_queries)
    # Read, tenant minimum, holds, the check's read, the lock, one UPDATE
    # (result and mark), two INSERTs: no UPDATE of its own for the mark.
    assert len(_statements(recorded)) == 8


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """The statements, without transaction control (BEGIN, savepoints)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(control)]
    robot.refresh_from_db()
    assert robot.check_queued_until is None


# --- Disabled connections -------------------------------------------------------------


def test_disabled_connections_are_never_checked(robot, provider, enqueued):
    lifecycle.set_enabled(connection=robot, enabled=False, actor=None)
    robot.refresh_from_db()
    assert robot.next_check_at is None
    # Even if a next check were due, the sweep skips it...
    Connection.objects.filter(pk=robot.pk).update(next_check_at=timezone.now())
    assert robot.pk not in set(tasks.due_for_check().values_list("pk", flat=True))
    assert tasks.health_sweep.run() == 0
    # ...and a task already queued does nothing.
    requests, checks = len(provider.requests), robot.health_checks.count()
    tasks.check_connections_task.run(robot.pk)
    tasks.check_connection_task.run(robot.pk)
    assert len(provider.requests) == requests and robot.health_checks.count() == checks

    lifecycle.set_enabled(connection=robot, enabled=True, actor=None)
    robot.refresh_from_db()
    assert robot.next_check_at == robot.last_checked_at + timedelta(seconds=300)


# --- Status and hysteresis ------------------------------------------------------------


def test_one_timeout_does_not_flip_a_healthy_connection(robot, provider, mailoutbox):
    provider.stop()
    result = check_now(robot)
    assert not result.ok and result.failure == "unreachable"
    assert robot.state == ConnectionState.CONNECTED
    assert robot.consecutive_failures == 1
    assert robot.last_error  # in plain words, shown on the page
    latest = robot.health_checks.first()
    assert (latest.ok, latest.error) == (False, result.error)
    assert mailoutbox == []

    check_now(robot)
    assert robot.state == ConnectionState.DEGRADED
    assert robot.consecutive_failures == 2
    check_now(robot)
    check_now(robot)
    assert robot.state == ConnectionState.DEGRADED
    assert subjects(mailoutbox) == ["Robot is degraded"]  # once, not per failed check
    assert sorted(mailoutbox[0].to) == ["boss@example.com", "dev@example.com"]

    provider.start_again()
    result = check_now(robot)
    assert result.ok and result.latency_ms is not None
    assert robot.state == ConnectionState.CONNECTED
    assert (robot.consecutive_failures, robot.last_error) == (0, "")
    assert robot.last_success_at == robot.last_checked_at
    assert subjects(mailoutbox) == ["Robot is degraded", "Robot has recovered"]
    assert "connected again (it was Degraded)" in mailoutbox[1].body
    check_now(robot)
    assert len(mailoutbox) == 2
    changes = robot.events.filter(kind=ConnectionEvent.Kind.STATE_CHANGED)
    assert [event.detail.split(".")[0] for event in changes] == [
        "Degraded → Connected",
        "Connected → Degraded",
    ]


@pytest.mark.parametrize("status", [503, 429])
def test_provider_errors_are_transient(robot, provider, settings, mailoutbox, status):
    settings.PORTAL_HEALTH_DEGRADED_AFTER = 3
    provider.fail_with = status
    check_now(robot)
    check_now(robot)
    assert robot.state == ConnectionState.CONNECTED
    check_now(robot)
    assert robot.state == ConnectionState.DEGRADED
    assert len(mailoutbox) == 1


def test_a_single_success_resets_the_count(robot, provider, mailoutbox):
    provider.stop()
    check_now(robot)
    provider.start_again()
    check_now(robot)
    provider.stop()
    check_now(robot)
    assert robot.state == ConnectionState.CONNECTED
    assert robot.consecutive_failures == 1
    assert mailoutbox == []


def test_rejected_credentials_need_reconnect_at_once(robot, provider, mailoutbox):
    vault.store_secret(robot, {"token": "ghp_revoked_token_000000000000"})
    result = check_now(robot)
    assert result.failure == "rejected"
    assert robot.state == ConnectionState.NEEDS_RECONNECT
    check_now(robot)
    # A timeout does not hide it: the credential is still known to be refused.
    provider.stop()
    check_now(robot)
    assert robot.state == ConnectionState.NEEDS_RECONNECT
    assert subjects(mailoutbox) == ["Robot needs reconnecting"]
    assert "Reconnect" in mailoutbox[0].body and "ghp_revoked" not in mailoutbox[0].body

    # Replacing the secret brings it back, and people hear that it recovered.
    provider.start_again()
    credentials.replace_secret(connection=robot, secret={"token": GOOD_TOKEN}, actor=None)
    robot.refresh_from_db()
    assert robot.state == ConnectionState.CONNECTED
    assert subjects(mailoutbox)[-1] == "Robot has recovered"


def test_missing_permission_is_misconfigured(robot, mailoutbox):
    vault.store_secret(robot, {"token": WEAK_TOKEN})
    result = check_now(robot)
    assert (result.failure, result.status_code) == ("forbidden", 403)
    assert robot.state == ConnectionState.MISCONFIGURED
    assert "lack permission" in robot.last_error
    check_now(robot)
    assert subjects(mailoutbox) == ["Robot is misconfigured"]


def test_personal_workspace_tells_only_its_authenticator(fakehub, developer, folder_admin):
    from django.core import mail

    workspace = developer.personal_workspace
    mine = make_pat(fakehub, workspace, developer, name="Mine")
    vault.store_secret(mine, {"token": "ghp_revoked_token_000000000000"})
    check_now(mine)
    assert [message.to for message in mail.outbox] == [["dev@example.com"]]


# --- Polling interval -----------------------------------------------------------------


def test_polling_interval_has_a_tenant_wide_minimum(robot):
    assert validation.clean_polling_interval(60) == 60
    set_minimum(600)
    with pytest.raises(ValidationError) as raised:
        validation.clean_polling_interval(300)
    message = raised.value.message_dict["polling_interval_seconds"][0]
    assert "at least 600 seconds (10 minutes)" in message and "tenant-wide minimum" in message
    with pytest.raises(ValidationError, match="at most 86400 seconds"):
        validation.clean_polling_interval(86_401)
    with pytest.raises(ValidationError):
        details.edit_connection(
            connection=robot,
            name="Robot",
            description="",
            polling_interval_seconds=300,
            fields={},
            actor=None,
        )
    # Connections chosen below the new minimum are checked at its pace.
    check_now(robot)
    assert robot.polling_interval_seconds == 300
    assert robot.next_check_at == robot.last_checked_at + timedelta(seconds=600)


def test_new_connections_start_at_the_minimum(fakehub, tree, developer):
    set_minimum(900)
    connection = make_pat(fakehub, tree["finance"], developer)
    assert connection.polling_interval_seconds == 900  # the connector says 300


def test_edit_page_names_the_minimum(client, robot, developer):
    set_minimum(600)
    client.force_login(developer)
    url = reverse("connection_edit", args=[robot.folder_id, robot.pk])
    response = client.post(url, {"name": "Robot", "polling_interval_seconds": "120"})
    assert response.status_code == 400
    assert "at least 600 seconds (10 minutes), the tenant-wide minimum" in (
        response.content.decode()
    )


def test_governance_page_sets_the_minimum(client, tenant_admin):
    client.force_login(tenant_admin)
    url = reverse("tenant_governance")
    page = client.get(url).content.decode()
    assert "Minimum polling interval (seconds)" in page
    response = client.post(
        url, {"allow_shared_connection_creation": "on", "min_polling_interval_seconds": "30"}
    )
    assert response.status_code == 200
    assert "greater than or equal to 60" in response.content.decode()
    assert TenantSettings.load().min_polling_interval_seconds == 60
    response = client.post(
        url, {"allow_shared_connection_creation": "on", "min_polling_interval_seconds": "600"}
    )
    assert response.status_code == 302
    assert TenantSettings.load().min_polling_interval_seconds == 600
    # Left out, it stays as it is.
    client.post(url, {"allow_shared_connection_creation": "on"})
    assert TenantSettings.load().min_polling_interval_seconds == 600


# --- OAuth 2.0: refresh before the check --------------------------------------------------


@pytest.fixture
def oauth_connection(client, make_user, tree, sandbox_oauth):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "C"})
    client.get(local(approve(client, continue_url(response))))
    return Connection.objects.get()


def test_oauth_token_about_to_expire_is_refreshed_before_the_check(
    oauth_connection, token_requests
):
    connection = oauth_connection
    assert connection.next_check_at is not None
    old = vault.read_secret(connection)
    result = check_now(connection)
    assert result.ok and token_requests.count("refresh_token") == 0  # token still fresh

    Connection.objects.filter(pk=connection.pk).update(token_expires_at=timezone.now())
    result = check_now(connection)
    assert result.ok, result.error
    assert token_requests.count("refresh_token") == 1
    new = vault.read_secret(connection)
    assert new["access_token"] != old["access_token"]
    assert connection.state == ConnectionState.CONNECTED
    assert connection.token_expires_at > timezone.now() + timedelta(minutes=30)
    kinds = list(connection.events.values_list("kind", flat=True)[:2])
    assert kinds == [ConnectionEvent.Kind.CHECKED, ConnectionEvent.Kind.REFRESHED]


def test_oauth_refused_refresh_is_a_failed_check_told_once(
    oauth_connection, token_requests, mailoutbox
):
    connection = oauth_connection
    secret = vault.read_secret(connection)
    vault.store_secret(connection, {**secret, "refresh_token": "spent-refresh-token-value"})
    Connection.objects.filter(pk=connection.pk).update(token_expires_at=timezone.now())
    result = check_now(connection)
    assert not result.ok and result.failure == "rejected"
    assert token_requests.count("refresh_token") == 1
    assert connection.state == ConnectionState.NEEDS_RECONNECT
    assert connection.health_checks.first().ok is False
    # Checked again: no request to the token endpoint, no second message.
    check_now(connection)
    assert token_requests.count("refresh_token") == 1
    assert len(mailoutbox) == 1 and mailoutbox[0].subject == "C needs reconnecting"


def test_oauth_without_refresh_token_is_misconfigured(oauth_connection, token_requests):
    connection = oauth_connection
    secret = vault.read_secret(connection)
    secret.pop("refresh_token", None)
    vault.store_secret(connection, secret)
    Connection.objects.filter(pk=connection.pk).update(token_expires_at=timezone.now())
    result = check_now(connection)
    assert not result.ok and "no refresh token" in result.error
    assert connection.state == ConnectionState.MISCONFIGURED
    assert token_requests == []


# --- People leaving -------------------------------------------------------------------


def test_deactivated_authenticator(robot, developer, folder_admin, fakehub, mailoutbox):
    personal = make_pat(fakehub, developer.personal_workspace, developer, name="Personal")
    assert robot.authenticator_deactivated is False
    developer.is_active = False
    developer.save()
    robot.refresh_from_db()
    assert robot.authenticator_deactivated is True
    assert len(mailoutbox) == 1  # the folder's administrators, once
    message = mailoutbox[0]
    assert message.to == ["boss@example.com"]
    assert "authenticated by a deactivated user" in message.subject
    assert "Reconnect" in message.body and "Robot" in message.body
    assert robot.events.filter(kind=ConnectionEvent.Kind.AUTHENTICATOR_LEFT).count() == 1
    assert not personal.events.filter(kind=ConnectionEvent.Kind.AUTHENTICATOR_LEFT).exists()

    # The connection keeps working.
    assert check_now(robot).ok and robot.state == ConnectionState.CONNECTED
    # Saved again while inactive (a login attempt, an admin edit): no new message.
    developer.first_name = "Gone"
    developer.save()
    assert len(mailoutbox) == 1
    # Later changes of state reach only active people.
    vault.store_secret(robot, {"token": "ghp_revoked_token_000000000000"})
    check_now(robot)
    assert mailoutbox[-1].to == ["boss@example.com"]


# --- Known secret expiry ----------------------------------------------------------------


def test_pat_expiry_from_the_provider_warns_ahead(robot, provider):
    soon = timezone.now() + timedelta(days=5, hours=1)
    provider.token_expiration = soon.strftime("%Y-%m-%d %H:%M:%S UTC")
    check_now(robot)
    assert robot.secret_expires_at == soon.replace(microsecond=0)
    assert robot.warning.startswith(f"Personal access token expires on {soon:%Y-%m-%d} UTC")
    assert "(in 5 days)" in robot.warning

    provider.token_expiration = (timezone.now() + timedelta(days=90)).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )
    check_now(robot)
    assert robot.warning == ""

    # Another standing warning is left alone.
    Connection.objects.filter(pk=robot.pk).update(warning="Something else to know.")
    robot.refresh_from_db()
    provider.token_expiration = soon.strftime("%Y-%m-%d %H:%M:%S UTC")
    check_now(robot)
    assert robot.warning == "Something else to know."


def test_expiry_from_a_connection_field_warns_ahead(robot):
    day = (timezone.now() + timedelta(days=3)).date()
    Connection.objects.filter(pk=robot.pk).update(fields={"secret_expires_on": day.isoformat()})
    robot.refresh_from_db()
    check_now(robot)
    assert robot.secret_expires_at.date() == day
    assert "expires on" in robot.warning and "replace it before then" in robot.warning
