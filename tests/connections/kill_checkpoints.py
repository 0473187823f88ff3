"""Test-only: what a Celery worker does at the named points of a token refresh
(``connections.refresh._checkpoint``), for the kill-and-redeliver tests.

Loaded into a real worker with

    celery -A portal worker --include tests.connections.kill_checkpoints ...

and steered by two environment variables, read only here:

``PORTAL_TEST_EVENTS``
    a file; every checkpoint reached, every task finished and the worker
    being ready are appended to it, one JSON line each.
``PORTAL_TEST_KILL_AT``
    a checkpoint name (``before_request``, ``after_answer``, ``after_commit``);
    on reaching it the worker records ``stopped`` and waits there for the
    test to SIGKILL it.

Nothing in the portal imports this module: without it the checkpoints do
nothing.
"""

from __future__ import annotations

import json
import os
import time

from celery.signals import task_postrun, worker_process_init, worker_ready

EVENTS = os.environ.get("PORTAL_TEST_EVENTS", "")
KILL_AT = os.environ.get("PORTAL_TEST_KILL_AT", "")


def record(event: str, **details) -> None:
    if not EVENTS:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "at": time.time(), **details})
    # One write per line, appended: whole lines even with several processes.
    with open(EVENTS, "a") as handle:
        handle.write(line + "\n")


def checkpoint(name: str, connection_id: int) -> None:
    record("checkpoint", name=name, connection=connection_id)
    if name == KILL_AT:
        record("stopped", name=name, connection=connection_id)
        while True:  # until the test kills the worker
            time.sleep(60)


@worker_process_init.connect
def _install(**kwargs) -> None:
    """In each pool process, after the fork: hook into the refresh."""
    from connections import refresh

    if checkpoint not in refresh.checkpoint_hooks:
        refresh.checkpoint_hooks.append(checkpoint)


@worker_ready.connect
def _ready(**kwargs) -> None:
    record("ready")


@task_postrun.connect
def _finished(task=None, args=None, state=None, **kwargs) -> None:
    record("task_done", task=getattr(task, "name", ""), args=list(args or ()), state=state)


def read_events(path) -> list[dict]:
    """The events recorded so far (for the test)."""
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.endswith("\n")]
    except FileNotFoundError:
        return []
