"""Token refresh that never breaks a connection.

Providers that rotate refresh tokens revoke the old one when it is used, so
two refreshes of one connection at once break it. Here a refresh is
single-flight: the caller first takes a lease on the connection row with a
conditional UPDATE (works alike on SQLite and PostgreSQL, no Redis needed),
and only the lease holder talks to the token endpoint. Everyone else waits
for the holder to finish and uses its result; a caller that cannot get the
lease in time does not refresh without it.

Every stored token set moves the connection's ``token_version`` in the same
UPDATE. The version, never a timestamp, says "the row is still as I read
it": two refreshes within one second leave the same expiry, but never the
same version. A caller that waited while another refreshed takes that
result as soon as the version moves, fresh or not (a token may live less
than the lead time), so one expiry costs one token request however many
ask. The lead applied to a token is at most half its lifetime.

The new token set is stored in one transaction, and only while the lease is
still ours and the version is the one the lease was taken on. When the
provider answers ``invalid_grant`` the stored credential is read again
first: if it changed, another refresh won and this is no revocation;
otherwise the connection needs reconnecting and nobody tries again until it
is reconnected.

Few statements per refresh, since the workers share their machine with
others: the connection is read with its credential in one query; the lease
is a conditional UPDATE taken only if the connection is still as read (so
the holder need not read it again); and the transaction that stores the
answer updates the connection once, conditioned on the lease being ours,
setting the new expiry and handing the lease back in the same statement,
then replaces the ciphertext and records the event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from connections import oauth, vault
from connections.models import Connection, ConnectionEvent, ConnectionState
from connections.notifications import state_changed

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
    """No fresh token. ``transient``: worth retrying later (network, 5xx, 429).
    ``status_code``: the token endpoint's, as ``oauth.OAuthFlowError`` has it."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        retry_after: int = 0,
        status_code: int | None = None,
    ):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.status_code = status_code


class LeaseTimeout(RefreshError):
    """Another caller holds the refresh lease and did not finish in time."""


def lead_time() -> timedelta:
    return timedelta(seconds=settings.PORTAL_REFRESH_LEAD_SECONDS)


def lead_for(connection: Connection, lead: timedelta | None = None) -> timedelta:
    """How long before its expiry a token is refreshed: the lead time, at
    most half the token's lifetime (a token living 20 s with a lead of
    300 s would otherwise never be fresh)."""
    lead = lead or lead_time()
    lifetime = connection.token_lifetime_seconds
    if lifetime:
        return min(lead, timedelta(seconds=lifetime / 2))
    return lead


def is_fresh(connection: Connection, lead: timedelta | None = None) -> bool:
    expires = connection.token_expires_at
    return expires is None or expires > timezone.now() + lead_for(connection, lead)


# What a refresh reads of a connection (with its sealed credential).
READ_FIELDS = (
    "name",
    "connector_key",
    "auth_type",
    "own_app",
    "fields",
    "state",
    "is_enabled",
    "last_error",
    "token_expires_at",
    "token_lifetime_seconds",
    "token_version",
    "credential__ciphertext",
)


# --- The refresh ----------------------------------------------------------------


def _read(connection_id: int) -> Connection:
    """The connection (``READ_FIELDS``) and its sealed credential, in one
    statement."""
    return Connection.objects.select_related("credential").only(*READ_FIELDS).get(pk=connection_id)


def _take_lease(connection: Connection, owner: str, to_refresh: bool = True) -> bool:
    """Take the lease if it is free and the connection is still as ``connection``
    was read: same token version, enabled, not waiting for a reconnect. So the
    holder needs no second read: had another token set been stored in between,
    the version would have moved and the caller reads again."""
    now = timezone.now()
    free = Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now)
    as_read = Connection.objects.filter(
        free, pk=connection.pk, token_version=connection.token_version
    )
    if to_refresh:
        as_read = as_read.filter(is_enabled=True).exclude(state=ConnectionState.NEEDS_RECONNECT)
    until = now + timedelta(seconds=settings.PORTAL_REFRESH_LEASE_SECONDS)
    return as_read.update(refresh_lease_owner=owner, refresh_lease_until=until) == 1


def _release_lease(connection_id: int, owner: str) -> None:
    Connection.objects.filter(pk=connection_id, refresh_lease_owner=owner).update(
        refresh_lease_owner="", refresh_lease_until=None
    )


@contextmanager
def holding_lease(connection_id: int) -> Iterator[None]:
    """For a write of the sealed credential outside a refresh (a new secret,
    a BYOA app's new client secret kept with the tokens): waits until no
    refresh of the connection is running, and holds the lease so that none
    starts until the block ends. The block runs in a transaction that also
    moves the token version, so a refresh that read the credential before
    cannot store its answer (built on the old one) over the new one."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + settings.PORTAL_REFRESH_WAIT_SECONDS
    while not _take_lease(_read(connection_id), owner, to_refresh=False):
        if time.monotonic() >= deadline:
            raise LeaseTimeout(
                "A token refresh of this connection is running and did not finish in time; "
                "try again in a minute.",
                transient=True,
            )
        time.sleep(0.1)
    try:
        with transaction.atomic():
            yield
            Connection.objects.filter(pk=connection_id, refresh_lease_owner=owner).update(
                token_version=F("token_version") + 1,
                refresh_lease_owner="",
                refresh_lease_until=None,
            )
    finally:
        _release_lease(connection_id, owner)  # when the block failed


def _require_refreshable(connection: Connection) -> None:
    if not connection.is_enabled:
        raise RefreshError(f"{connection.name} is disabled: it is never refreshed.")
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        raise RefreshError(f"{connection.name} needs reconnecting: {connection.last_error}")


def refresh_connection(
    connection_id: int, *, force: bool = False, wait_seconds: float | None = None
) -> dict:
    """A working token set for the connection, refreshed first when it expires
    within the lead time (or always, with ``force``), single-flight."""
    return _refresh(connection_id, force=force, wait_seconds=wait_seconds, dequeue=False)[0]


def refresh_and_dequeue(connection_id: int) -> bool:
    """The refresh task's ``refresh_connection``: when it stores a new token
    set, the same UPDATE also clears the connection's queued mark
    (``refresh_queued_until``). True when it did so; otherwise the caller
    clears the mark itself."""
    return _refresh(connection_id, force=False, wait_seconds=None, dequeue=True)[1]


def _refresh(
    connection_id: int, *, force: bool, wait_seconds: float | None, dequeue: bool
) -> tuple[dict, bool]:
    """(the token set, whether this call stored it)."""
    owner = uuid.uuid4().hex
    wait = settings.PORTAL_REFRESH_WAIT_SECONDS if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    first_seen = None
    while True:
        connection = _read(connection_id)
        _require_refreshable(connection)
        if first_seen is None:
            first_seen = connection.token_version
        elif connection.token_version != first_seen:
            # Another caller stored a token set while this one waited: that is
            # the refresh this one asked for, fresh by the lead or not.
            return vault.open_credential(connection.credential), False
        if not force and is_fresh(connection):
            return vault.open_credential(connection.credential), False
        if _take_lease(connection, owner):
            break
        if time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"Another refresh of {connection.name} is running and did not finish in time.",
                transient=True,
            )
        # Someone else is refreshing (or just did): their result is ours when
        # they finish.
        time.sleep(0.1)
    stored = False
    try:
        # Holding the lease on the connection as read: it is due (or forced).
        secret, stored = _refresh_holding_lease(connection, owner, dequeue=dequeue)
        return secret, stored
    finally:
        if not stored:  # a stored token set handed the lease back with it
            _release_lease(connection_id, owner)


def _refresh_holding_lease(
    connection: Connection, owner: str, *, dequeue: bool
) -> tuple[dict, bool]:
    connection_id = connection.pk
    before = vault.open_credential(connection.credential)
    _checkpoint("before_request", connection_id)
    try:
        new_secret = oauth.request_refresh(connection, before)
    except oauth.OAuthFlowError as error:
        return _refresh_failed(connection, before, error), False
    _checkpoint("after_answer", connection_id)
    _store(connection, owner, new_secret, dequeue=dequeue)
    _checkpoint("after_commit", connection_id)
    return new_secret, True


def _store(connection: Connection, owner: str, secret: dict, *, dequeue: bool) -> None:
    """The new token set replaces the old in one transaction, only while the
    lease is ours; the connection's UPDATE that checks the lease also records
    the new expiry and hands the lease back."""
    queued = {"refresh_queued_until": None} if dequeue else {}
    expires = oauth.expiry_of(secret)
    with transaction.atomic():
        # The row stays locked until the commit, as select_for_update would.
        stored = Connection.objects.filter(
            pk=connection.pk, refresh_lease_owner=owner, token_version=connection.token_version
        ).update(
            token_expires_at=expires,
            token_lifetime_seconds=oauth.lifetime_of(secret),
            token_version=F("token_version") + 1,
            state=ConnectionState.CONNECTED,
            refresh_failing_since=None,
            refresh_lease_owner="",
            refresh_lease_until=None,
            updated_at=timezone.now(),
            **queued,
        )
        if stored != 1:
            # The lease ran out while the provider answered and someone else
            # took it, or a reconnect stored another token set meanwhile (the
            # version moved); they decide. Our answer is lost (the provider
            # may have rotated): nothing is written.
            raise RefreshError(
                "The connection changed while its token was refreshed (the refresh took "
                "longer than its lease, or it was reconnected meanwhile).",
                transient=True,
            )
        if not vault.update_secret(connection.pk, secret):
            vault.store_secret(connection, secret)
        ConnectionEvent.objects.create(
            connection_id=connection.pk,
            kind=ConnectionEvent.Kind.REFRESHED,
            detail=_expiry_detail(expires),
            token_expires_at=expires,
        )


def _expiry_detail(expires: datetime | None) -> str:
    """The history's words for a refresh; the expiry itself is the event's field."""
    return f"New access token valid until {expires:%Y-%m-%d %H:%M:%S} UTC." if expires else ""


def _refresh_failed(connection: Connection, before: dict, error: oauth.OAuthFlowError) -> dict:
    if error.transient:
        with transaction.atomic():
            Connection.objects.filter(pk=connection.pk, refresh_failing_since__isnull=True).update(
                refresh_failing_since=timezone.now()
            )
            ConnectionEvent.objects.create(
                connection=connection,
                kind=ConnectionEvent.Kind.REFRESH_FAILED,
                detail=f"Will try again: {error}"[:500],
            )
        raise RefreshError(
            str(error),
            transient=True,
            retry_after=error.retry_after,
            status_code=error.status_code,
        )
    if error.code == "invalid_grant":
        current = vault.read_secret(connection)  # the credential as stored now
        if current.get("refresh_token") != before.get("refresh_token"):
            # Another refresh won the race: its tokens are the good ones.
            return current
    if error.code in {"invalid_client", "unauthorized_client", oauth.REFUSED_BY_PORTAL}:
        # The app's credentials are refused, or the portal may not call the
        # token endpoint (its address is not allowed): reconnecting won't help.
        mark_broken(connection, ConnectionState.MISCONFIGURED, str(error))
    else:
        said = f" ({error})" if error.code and error.code != "invalid_grant" else ""
        mark_broken(
            connection,
            ConnectionState.NEEDS_RECONNECT,
            "The provider refused the refresh token: it was revoked, expired or already "
            f"used{said}. Reconnect the connection to sign in again.",
        )
    raise RefreshError(str(error), status_code=error.status_code)


def mark_broken(connection: Connection, state: str, message: str) -> None:
    """Needs reconnect (the grant is gone: nobody refreshes it again until it
    is reconnected) or misconfigured (the app's credentials are refused).
    Tells the people responsible once per change of state."""
    with transaction.atomic():
        changed = (
            Connection.objects.filter(pk=connection.pk)
            .exclude(state=state)
            .update(
                state=state,
                last_error=message[:500],
                refresh_failing_since=None,
                updated_at=timezone.now(),
            )
        )
        if changed:
            ConnectionEvent.objects.create(
                connection=connection,
                kind=ConnectionEvent.Kind.REFRESH_FAILED,
                detail=message[:500],
            )
    if changed:
        log.warning("Connection %s is now %s", connection.pk, state)
        transaction.on_commit(lambda: state_changed(connection.pk))
