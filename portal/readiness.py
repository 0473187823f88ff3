"""Readiness checks the apps add to ``/readyz`` (portal/views/probes.py).

The portal knows the database and the broker; what else must hold before a
process takes traffic belongs to the app that knows it, which registers a
check in its ``AppConfig.ready`` (for example, the connections app: every
sealed secret's key is configured). The portal never imports those apps.

A check takes no argument and returns None when ready, or a sentence saying
what is wrong, which ``/readyz`` shows: name what failed, never a secret or
how something is configured. Every probe runs every check, and orchestrators
probe often: a check is one cheap query at most.
"""

from __future__ import annotations

from collections.abc import Callable

ReadinessCheck = Callable[[], str | None]

# Names /readyz gives its own answers.
RESERVED = frozenset({"status", "database", "broker"})

_checks: dict[str, ReadinessCheck] = {}


def register(name: str, check: ReadinessCheck) -> None:
    """Run ``check`` on every /readyz probe, its answer under ``name``
    (registering a name again replaces its check)."""
    if name in RESERVED:
        raise ValueError(f"{name!r} is /readyz's own; choose another name.")
    _checks[name] = check


def registered() -> dict[str, ReadinessCheck]:
    """The checks by name, in the order they were first registered."""
    return dict(_checks)
