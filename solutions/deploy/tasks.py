"""Deployment tasks: thin, as Celery's guide has them (id in, re-fetch, call
the engine). Late-acknowledged: a worker killed mid-deployment leaves the
message to be delivered again, and the lease decides who runs it."""

from __future__ import annotations

from celery import shared_task

from solutions.deploy import engine


@shared_task(name="solutions.deploy.tasks.run_deployment", acks_late=True, ignore_result=True)
def run_deployment_task(deployment_id: int) -> str:
    return engine.run(deployment_id)


@shared_task(name="solutions.deploy.tasks.deployment_sweep", ignore_result=True)
def deployment_sweep() -> int:
    """Resume or roll back the deployments whose worker died."""
    ids = engine.due()
    for deployment_id in ids:
        run_deployment_task.delay(deployment_id)
    return len(ids)
