"""Test-only: where a real Celery worker stops in a deployment, for the
deployment kill tests (``test_deploy_worker_kill.py``).

Loaded into the worker with

    celery -A portal worker --include tests.solutions.deploy_kill_points ...

It records to ``tests.connections.kill_checkpoints``' event file
(``PORTAL_TEST_EVENTS``) and reads, only here:

``PORTAL_TEST_QUEUE``
    what the worker's tasks send goes to this queue, the test's own.
``PORTAL_TEST_DEPLOY_STOP_AT``
    ``<point>:<position>`` (``after_step:3``, ``after_undo:2``): on reaching
    that engine checkpoint (``solutions.deploy.engine.checkpoint_hooks``) the
    worker records ``stopped`` and waits there for the test to SIGKILL it.
``PORTAL_TEST_DEPLOY_FAIL_AT``
    a step position whose step fails (``engine.before_step_hooks``), so the
    run rolls back.

Nothing in the portal imports this module.
"""

from __future__ import annotations

import os
import time

from celery.signals import worker_process_init

from tests.connections.kill_checkpoints import record

QUEUE = os.environ.get("PORTAL_TEST_QUEUE", "")
STOP_AT = os.environ.get("PORTAL_TEST_DEPLOY_STOP_AT", "")
FAIL_AT = os.environ.get("PORTAL_TEST_DEPLOY_FAIL_AT", "")


def checkpoint(name: str, deployment_id: int, position: int) -> None:
    record("checkpoint", name=name, deployment=deployment_id, position=position)
    if f"{name}:{position}" == STOP_AT:
        record("stopped", name=name, deployment=deployment_id, position=position)
        while True:  # until the test kills the worker
            time.sleep(60)


def fail(step) -> None:
    if FAIL_AT and step.position == int(FAIL_AT):
        raise RuntimeError(f"injected failure at step {step.position}")


@worker_process_init.connect
def _install(**kwargs) -> None:
    from solutions.deploy import engine

    if checkpoint not in engine.checkpoint_hooks:
        engine.checkpoint_hooks.append(checkpoint)
    if fail not in engine.before_step_hooks:
        engine.before_step_hooks.append(fail)
    if QUEUE:
        from portal.celery import app

        app.conf.task_routes = {"*": {"queue": QUEUE}}
        app.amqp.flush_routes()
        app.amqp.__dict__.pop("router", None)
