"""A connection's status as people see it, and the tenant's health overview.

A connection's status is its state while it is enabled, and Disabled while it
is switched off, whatever its state (a disabled connection is not used,
refreshed or checked, so its state says nothing now). The lists filter by it
(``with_status``); the tenant's health overview counts connections by it and
lists those that need attention, worst first, each with the troubleshooting
entry that explains its trouble (``health_overview``). Plain functions on
QuerySets: the views parse the input, ask permission, call these and render.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from connections.models import Connection, ConnectionState, HealthCheck
from connections.troubleshooting import error_kind

DISABLED = "disabled"
# The states that need a person, worst first: the credential is gone, the
# connection is set up wrong, the provider keeps failing.
ATTENTION_STATES = (
    ConnectionState.NEEDS_RECONNECT,
    ConnectionState.MISCONFIGURED,
    ConnectionState.DEGRADED,
)
# How the overview orders the counts: trouble first, Disabled last.
COUNT_ORDER = (*ATTENTION_STATES, ConnectionState.CONNECTED, ConnectionState.NOT_CONNECTED)


def is_status(value: str) -> bool:
    return value == DISABLED or value in ConnectionState.values


def status_label(status: str) -> str:
    """A status's name ("Needs reconnect", "Disabled"); "" for no status."""
    return {**dict(ConnectionState.choices), DISABLED: "Disabled"}.get(status, "")


def with_status(connections: QuerySet[Connection], status: str) -> QuerySet[Connection]:
    """The connections of that status; an unknown status filters nothing."""
    if status == DISABLED:
        return connections.filter(is_enabled=False)
    if status in ConnectionState.values:
        return connections.filter(is_enabled=True, state=status)
    return connections


def needing_attention(connections: QuerySet[Connection]) -> QuerySet[Connection]:
    return connections.filter(is_enabled=True, state__in=ATTENTION_STATES)


@dataclass(frozen=True)
class StatusCount:
    state: str
    label: str
    count: int


def status_counts(connections: QuerySet[Connection]) -> list[StatusCount]:
    """Connections per status in one query; disabled ones count apart."""
    aggregates = {
        state: Count("pk", filter=Q(is_enabled=True, state=state))
        for state in ConnectionState.values
    }
    aggregates[DISABLED] = Count("pk", filter=Q(is_enabled=False))
    counts = connections.aggregate(**aggregates)
    return [
        StatusCount(state=status, label=status_label(status), count=counts[status])
        for status in (*COUNT_ORDER, DISABLED)
    ]


def worst_first(connections: QuerySet[Connection]) -> QuerySet[Connection]:
    """Ordered by how bad their state is, then failures in a row, then name;
    each with its latest check's ``last_status_code`` and ``last_ok`` (for
    ``trouble_anchor``), read in the same query."""
    latest = HealthCheck.objects.filter(connection=OuterRef("pk")).order_by("-checked_at", "-pk")
    return connections.annotate(
        severity=Case(
            *(When(state=state, then=Value(rank)) for rank, state in enumerate(ATTENTION_STATES)),
            default=Value(len(ATTENTION_STATES)),
            output_field=IntegerField(),
        ),
        last_status_code=Subquery(latest.values("status_code")[:1]),
        last_ok=Subquery(latest.values("ok")[:1]),
    ).order_by("severity", "-consecutive_failures", "name", "pk")


def trouble_anchor(
    connection: Connection, *, status_code: int | None = None, ok: bool = False
) -> str:
    """The troubleshooting entry for a connection that needs attention ("" for
    one that does not). ``status_code`` and ``ok`` are those of its latest
    health check, when it has one."""
    if not connection.is_enabled or connection.state not in ATTENTION_STATES:
        return ""
    return error_kind(
        state=connection.state, error=connection.last_error, status_code=status_code, ok=ok
    )


@dataclass(frozen=True)
class HealthOverview:
    # The status asked for as understood: "" (an unknown one too) lists
    # what needs attention.
    status: str
    label: str
    counts: list[StatusCount]
    # Worst first, with their latest check (``worst_first``): for a page.
    listed: QuerySet[Connection]


def health_overview(connections: QuerySet[Connection], status: str = "") -> HealthOverview:
    """Counts by status of ``connections``, and those of ``status`` (or, by
    default, those needing attention) worst first."""
    status = status if is_status(status) else ""
    listed = with_status(connections, status) if status else needing_attention(connections)
    return HealthOverview(
        status=status,
        label=status_label(status),
        counts=status_counts(connections),
        listed=worst_first(listed),
    )
