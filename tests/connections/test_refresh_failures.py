"""Refresh failures: transient ones retry with backoff and change nothing;
the sweep picks what is due with a constant number of queries; disabled
connections are never refreshed."""

from datetime import timedelta

import pytest
from django.db import connection as db
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import refresh, tasks, vault
from connections.actions import check
from connections.models import Connection, ConnectionState
from tests.connections.oauth_helpers import approve, continue_url, local, start
from tests.factories import FolderFactory, assign

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connected(client, make_user, tree, sandbox_oauth):
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    client.force_login(user)
    response = start(client, tree["finance"], "oauth2_authorization_code", {"name": "C"})
    client.get(local(approve(client, continue_url(response))))
    return Connection.objects.get()


@pytest.fixture
def unavailable_token_endpoint(monkeypatch):
    from oauth2_provider import views

    calls = []

    def unavailable(self, request, *args, **kwargs):
        calls.append(request.POST.get("grant_type"))
        response = HttpResponse("<h1>Service Unavailable</h1>", status=503)
        response["Retry-After"] = "120"
        return response

    monkeypatch.setattr(views.TokenView, "post", unavailable)
    return calls


def test_transient_failure_changes_nothing(connected, unavailable_token_endpoint):
    before = vault.read_secret(connected)
    with pytest.raises(refresh.RefreshError) as raised:
        refresh.refresh_connection(connected.pk, force=True)
    assert raised.value.transient and raised.value.retry_after == 120
    connected.refresh_from_db()
    assert connected.state == ConnectionState.CONNECTED  # the token is still valid
    assert vault.read_secret(connected) == before
    assert connected.refresh_lease_owner == ""  # the lease was released


def test_task_retries_with_backoff(connected, unavailable_token_endpoint, monkeypatch):
    retries = []

    def fake_retry(*, countdown, max_retries):
        retries.append(countdown)
        return RuntimeError("retry scheduled")

    Connection.objects.filter(pk=connected.pk).update(token_expires_at=timezone.now())
    monkeypatch.setattr(tasks.refresh_connection_task, "retry", fake_retry)
    with pytest.raises(RuntimeError, match="retry scheduled"):
        tasks.refresh_connection_task.run(connected.pk)
    assert retries and 120 <= retries[0] <= tasks.MAX_BACKOFF_SECONDS
    assert tasks.backoff(0) < tasks.backoff(3) <= tasks.MAX_BACKOFF_SECONDS


def test_disabled_connections_are_never_refreshed(connected, token_requests):
    Connection.objects.filter(pk=connected.pk).update(
        is_enabled=False, token_expires_at=timezone.now()
    )
    with pytest.raises(refresh.RefreshError, match="disabled"):
        refresh.refresh_connection(connected.pk, force=True)
    assert token_requests.count("refresh_token") == 0
    assert connected.pk not in set(tasks.due_for_refresh().values_list("pk", flat=True))


def _many(folder, count, expires_in):
    Connection.objects.bulk_create(
        [
            Connection(
                folder=folder,
                connector_key="sandbox",
                name=f"c{expires_in}-{i}",
                auth_type="oauth2_authorization_code",
                state=ConnectionState.CONNECTED,
                token_expires_at=timezone.now() + timedelta(seconds=expires_in),
            )
            for i in range(count)
        ]
    )


def test_sweep_queries_do_not_grow_with_connections_not_due(
    settings, django_capture_on_commit_callbacks
):
    settings.PORTAL_REFRESH_BATCH = 50
    folder = FolderFactory()
    _many(folder, 3, expires_in=10)  # due
    with CaptureQueriesContext(db) as small, django_capture_on_commit_callbacks():
        assert tasks.refresh_sweep.run() == 3
    Connection.objects.update(refresh_queued_until=None)
    _many(folder, 2000, expires_in=86_400)  # not due
    with CaptureQueriesContext(db) as large, django_capture_on_commit_callbacks():
        assert tasks.refresh_sweep.run() == 3
    assert len(large) == len(small)
    # Queued once: the next sweep does not enqueue them again.
    with django_capture_on_commit_callbacks() as enqueued:
        assert tasks.refresh_sweep.run() == 0
    assert enqueued == []


def test_support_commands(connected, capsys):
    from django.core.management import CommandError, call_command

    call_command("refresh_connection", str(connected.pk))
    assert "token valid until" in capsys.readouterr().out
    call_command("check_connection", str(connected.pk))
    assert "OK as ada" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No connection"):
        call_command("check_connection", "999999")


def test_a_token_endpoint_the_guard_refuses_is_misconfigured(connected, settings):
    """The portal may not call the token endpoint (here plain http to a
    host it cannot vouch for): that is no revocation by the provider, and
    reconnecting would not help. Misconfigured, with the guard's reason."""
    settings.PORTAL_BASE_URL = "http://portal.invalid"
    before = vault.read_secret(connected)
    with pytest.raises(refresh.RefreshError) as raised:
        refresh.refresh_connection(connected.pk, force=True)
    assert not raised.value.transient
    connected.refresh_from_db()
    assert connected.state == ConnectionState.MISCONFIGURED
    assert connected.last_error == str(raised.value)
    assert "refused the refresh token" not in connected.last_error
    assert vault.read_secret(connected) == before


def test_a_check_whose_refresh_fails_records_the_token_endpoints_status(
    client, connected, unavailable_token_endpoint, settings
):
    """The check meets a refresh the token endpoint answered 503: the check
    records that status as data, and the page's guide entry follows it."""
    settings.PORTAL_HEALTH_DEGRADED_AFTER = 1
    Connection.objects.filter(pk=connected.pk).update(token_expires_at=timezone.now())
    result = check.check_connection(connection=connected)
    assert not result.ok and result.status_code == 503
    assert "token endpoint answered 503" in result.error
    connected.refresh_from_db()
    assert connected.state == ConnectionState.DEGRADED
    assert connected.health_checks.first().status_code == 503  # the latest
    page = client.get(reverse("connection_detail", args=[connected.folder_id, connected.pk]))
    assert 'href="/help/troubleshooting/#provider-error" data-testid="trouble-link"' in page.text
