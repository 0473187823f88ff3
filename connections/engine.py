"""The polling engine. Health checks and trigger polls are the same work: an
HTTP request on a connection's behalf, on its interval, with the result
recorded. Both run the same way:

- a sweep picks the due work with one query on a partial index and sends it
  in batches, several per task when many are due (``per_task``, ``chunks``);
- a task works through its batch inside one ``Batch``: the tenant's minimum
  polling interval read once, the providers' holds (``ProviderHold``) read
  once, one guarded HTTP session per egress policy so that the TCP (and TLS)
  connections to a host are reused across the batch, and the database
  connection kept for the whole task;
- the results are written together, in as few statements as the guarantees
  allow (``connections.actions.check.check_connections``,
  ``connections.triggers.polling.poll_triggers``).

Rate limits: a provider's 429 or 503 with Retry-After holds the connection
(its triggers, its next check); when the connector says its limits are per
app (``rate_limit: app``: one quota for every connection on an instance
host), it holds the host too, for every connection of this portal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from django.db.models import Model, QuerySet
from django.utils import timezone

from connections import egress, health, rate_limits
from connections.catalog.schema import ConnectorSpec
from connections.models import Connection

# A batch is at most this many; the sweep makes it smaller when few are due,
# so that at least TASKS_AT_LEAST tasks share the worker processes.
TASKS_AT_LEAST = 50


def per_task(due: int, most: int) -> int:
    """How many of ``due`` items one task takes, at most ``most``."""
    return max(1, min(most, due // TASKS_AT_LEAST))


def chunks(ids: Sequence[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(ids[start : start + size]) for start in range(0, len(ids), size)]


def update_grouped(
    queryset: QuerySet,
    rows: Iterable[Model],
    fields: Sequence[str],
    *,
    expressions: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> int:
    """Write ``fields`` of ``rows`` (through ``queryset``'s filters) with one
    UPDATE per distinct set of values: a batch's results mostly share theirs
    (Connected again, checked now, next check one interval on), and this costs
    a fraction of ``bulk_update``, whose CASE per row and field is slow to
    build. ``expressions`` may turn a group's values into expressions."""
    groups: dict[tuple, list[int]] = {}
    for row in rows:
        groups.setdefault(tuple(getattr(row, name) for name in fields), []).append(row.pk)
    updated = 0
    for values, pks in groups.items():
        changes = dict(zip(fields, values, strict=True))
        if expressions is not None:
            changes = expressions(changes)
        updated += queryset.filter(pk__in=pks).update(**changes)
    return updated


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class Batch:
    """What the checks and polls of one task share. Use it as a context
    manager: the sessions are closed at the end."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.minimum_interval = health.tenant_min_polling_seconds()
        self._sessions: dict[str, egress.EgressSession] = {}
        self._holds = rate_limits.holds_now(self.now)

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def session(self, connector: ConnectorSpec) -> egress.EgressSession:
        """The guarded session for this connector's requests, one per
        connector for the whole batch (its pool keeps connections per host)."""
        if connector.key not in self._sessions:
            self._sessions[connector.key] = egress.session(health.egress_policy(connector))
        return self._sessions[connector.key]

    def interval(self, connection: Connection) -> int:
        return health.effective_polling_interval(connection, self.minimum_interval)

    def held_until(self, host: str) -> datetime | None:
        """When a provider's per-app limit on ``host`` ends, if it holds now."""
        until = self._holds.get(host.lower())
        return until if until and until > timezone.now() else None

    def hold(self, connector: ConnectorSpec, url: str, until: datetime, reason: str) -> None:
        """A provider's Retry-After: when its limits are per app, no request
        to that host (from any connection) before ``until``."""
        if connector.rate_limit != "app":
            return
        host = host_of(url)
        if not host:
            return
        rate_limits.hold_host(host, until, reason)
        self._holds[host] = max(until, self._holds.get(host, until))
