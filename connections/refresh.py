"""Token refresh that never breaks a connection.

Providers that rotate refresh tokens revoke the old one when it is used, so
two refreshes of one connection at once break it. Here a refresh is
single-flight: the caller first takes a lease on the connection row with a
conditional UPDATE (works alike on SQLite and PostgreSQL, no Redis needed),
and only the lease holder talks to the token endpoint. Everyone else waits
for the holder to finish and uses its result; a caller that cannot get the
lease in time does not refresh without it.

The new token set is stored in one transaction, and only while the lease is
still ours. When the provider answers ``invalid_grant`` the stored credential
is read again first: if it changed, another refresh won and this is no
revocation; otherwise the connection needs reconnecting and nobody tries
again until it is reconnected.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connections import oauth, vault
from connections.models import Connection, ConnectionEvent, ConnectionState

log = logging.getLogger(__name__)

REFRESHABLE_STATES = (ConnectionState.CONNECTED, ConnectionState.DEGRADED)

# Named points in a refresh ("before_request", "after_answer", "after_commit")
# where a test can act, e.g. kill the worker (tests/connections/kill_checkpoints.py).
# Empty outside tests: nothing in the portal appends to it.
checkpoint_hooks: list[Callable[[str, int], None]] = []


def _checkpoint(name: str, connection_id: int) -> None:
    for hook in checkpoint_hooks:
        hook(name, connection_id)


class RefreshError(Exception):
    """No fresh token. ``transient``: worth retrying later (network, 5xx, 429)."""

    def __init__(self, message: str, *, transient: bool = False, retry_after: int = 0):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class LeaseTimeout(RefreshError):
    """Another caller holds the refresh lease and did not finish in time."""


def lead_time() -> timedelta:
    return timedelta(seconds=settings.PORTAL_REFRESH_LEAD_SECONDS)


def is_fresh(connection: Connection, lead: timedelta | None = None) -> bool:
    expires = connection.token_expires_at
    return expires is None or expires > timezone.now() + (lead or lead_time())


def _take_lease(connection_id: int, owner: str) -> bool:
    now = timezone.now()
    until = now + timedelta(seconds=settings.PORTAL_REFRESH_LEASE_SECONDS)
    taken = (
        Connection.objects.filter(pk=connection_id)
        .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
        .update(refresh_lease_owner=owner, refresh_lease_until=until)
    )
    return taken == 1


def _release_lease(connection_id: int, owner: str) -> None:
    Connection.objects.filter(pk=connection_id, refresh_lease_owner=owner).update(
        refresh_lease_owner="", refresh_lease_until=None
    )


def _usable(connection: Connection) -> None:
    if not connection.is_enabled:
        raise RefreshError(f"{connection.name} is disabled: it is never refreshed.")
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        raise RefreshError(f"{connection.name} needs reconnecting: {connection.last_error}")


def refresh_connection(
    connection_id: int, *, force: bool = False, wait_seconds: float | None = None
) -> dict:
    """A working token set for the connection, refreshed first when it expires
    within the lead time (or always, with ``force``), single-flight."""
    owner = uuid.uuid4().hex
    wait = settings.PORTAL_REFRESH_WAIT_SECONDS if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    waited = False
    while True:
        connection = Connection.objects.get(pk=connection_id)
        _usable(connection)
        if (not force or waited) and is_fresh(connection):
            return vault.read_secret(connection)
        if _take_lease(connection_id, owner):
            break
        if time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"Another refresh of {connection.name} is running and did not finish in time.",
                transient=True,
            )
        # Someone else is refreshing: their result is ours when they finish.
        waited = True
        time.sleep(0.1)
    try:
        return _refresh_holding_lease(connection_id, owner, force=force and not waited)
    finally:
        _release_lease(connection_id, owner)


def _refresh_holding_lease(connection_id: int, owner: str, *, force: bool) -> dict:
    connection = Connection.objects.get(pk=connection_id)
    _usable(connection)
    before = vault.read_secret(connection)
    if not force and is_fresh(connection):
        return before  # refreshed by the previous holder just before we took the lease
    _checkpoint("before_request", connection_id)
    try:
        new_secret = oauth.request_refresh(connection, before)
    except oauth.OAuthFlowError as error:
        return _refresh_failed(connection, before, error)
    _checkpoint("after_answer", connection_id)
    with transaction.atomic():
        still_ours = Connection.objects.filter(pk=connection_id, refresh_lease_owner=owner)
        if not still_ours.select_for_update().exists():
            # The lease ran out while the provider answered; whoever holds it
            # now decides. Our answer is lost (the provider may have rotated).
            raise RefreshError("The refresh took longer than its lease.", transient=True)
        vault.store_secret(connection, new_secret)
        Connection.objects.filter(pk=connection_id).update(
            token_expires_at=oauth.expiry_of(new_secret),
            state=ConnectionState.CONNECTED,
            updated_at=timezone.now(),
        )
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.REFRESHED,
            detail=_expiry_detail(new_secret),
        )
    _checkpoint("after_commit", connection_id)
    return new_secret


def _expiry_detail(secret: dict) -> str:
    expiry = oauth.expiry_of(secret)
    return f"New access token valid until {expiry:%Y-%m-%d %H:%M:%S} UTC." if expiry else ""


def _refresh_failed(connection: Connection, before: dict, error: oauth.OAuthFlowError) -> dict:
    if error.transient:
        ConnectionEvent.objects.create(
            connection=connection,
            kind=ConnectionEvent.Kind.REFRESH_FAILED,
            detail=f"Will try again: {error}"[:500],
        )
        raise RefreshError(str(error), transient=True, retry_after=error.retry_after)
    if error.code == "invalid_grant":
        current = vault.read_secret(Connection.objects.get(pk=connection.pk))
        if current.get("refresh_token") != before.get("refresh_token"):
            # Another refresh won the race: its tokens are the good ones.
            return current
    if error.code in {"invalid_client", "unauthorized_client"}:
        mark_broken(connection, ConnectionState.MISCONFIGURED, str(error))
    else:
        said = f" ({error})" if error.code and error.code != "invalid_grant" else ""
        mark_broken(
            connection,
            ConnectionState.NEEDS_RECONNECT,
            "The provider refused the refresh token: it was revoked, expired or already "
            f"used{said}. Reconnect the connection to sign in again.",
        )
    raise RefreshError(str(error))


def mark_broken(connection: Connection, state: str, message: str) -> None:
    """Needs reconnect (the grant is gone: nobody refreshes it again until it
    is reconnected) or misconfigured (the app's credentials are refused).
    Tells the people responsible once per change of state."""
    with transaction.atomic():
        changed = (
            Connection.objects.filter(pk=connection.pk)
            .exclude(state=state)
            .update(state=state, last_error=message[:500], updated_at=timezone.now())
        )
        if changed:
            ConnectionEvent.objects.create(
                connection=connection,
                kind=ConnectionEvent.Kind.REFRESH_FAILED,
                detail=message[:500],
            )
    if changed:
        log.warning("Connection %s is now %s", connection.pk, state)
        from connections.notifications import state_changed

        transaction.on_commit(lambda: state_changed(connection.pk))
