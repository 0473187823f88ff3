"""Test-only: where a real Celery worker stops for the trigger kill tests
(``test_worker_kill_triggers.py``), and the queue its tasks go to.

Loaded into the worker with

    celery -A portal worker --include tests.connections.triggers.kill_points ...

It imports ``tests.connections.kill_checkpoints`` for its event file
(``PORTAL_TEST_EVENTS``: ``ready``, ``task_done``, ``stopped`` lines) and
is steered by two more environment variables, read only here:

``PORTAL_TEST_QUEUE``
    every task the worker sends (the sweeps' polls and deliveries, a poll's
    deliveries) goes to this queue, the test's own, which the worker consumes.
``PORTAL_TEST_TRIGGER_STOP_AT``
    ``before_delivery``: the worker stops once a poll's page has committed
    and before any webhook of its jobs is sent: when it is about to publish
    the ``deliver_jobs`` task (enqueued after the page's commit), or, should
    nothing publish one, when a ``deliver_jobs`` task starts. It records
    ``stopped`` and waits there for the test to SIGKILL it.

Nothing in the portal imports this module.
"""

from __future__ import annotations

import os
import time

from celery.signals import before_task_publish, task_prerun, worker_process_init

from tests.connections.kill_checkpoints import record

QUEUE = os.environ.get("PORTAL_TEST_QUEUE", "")
STOP_AT = os.environ.get("PORTAL_TEST_TRIGGER_STOP_AT", "")
DELIVER = "connections.triggers.tasks.deliver_jobs"


def _stop(name: str, **details) -> None:
    record("stopped", name=name, **details)
    while True:  # until the test kills the worker
        time.sleep(60)


@worker_process_init.connect
def _route_to_the_test_queue(**kwargs) -> None:
    """In each pool process: whatever the tasks send goes to the test's queue."""
    if not QUEUE:
        return
    from portal.celery import app

    app.conf.task_routes = {"*": {"queue": QUEUE}}
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)  # built again with the routes above


@before_task_publish.connect
def _before_publish(sender=None, body=None, **kwargs) -> None:
    record("publish", task=sender)
    if STOP_AT == "before_delivery" and sender == DELIVER:
        args = body[0] if isinstance(body, list | tuple) and body else []
        _stop("before_delivery", via="publish", args=list(args))


@task_prerun.connect
def _started(task=None, args=None, **kwargs) -> None:
    name = getattr(task, "name", "")
    record("task_start", task=name, args=list(args or ()))
    if STOP_AT == "before_delivery" and name == DELIVER:
        _stop("before_delivery", via="task", args=list(args or ()))
