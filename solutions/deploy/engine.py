"""Running a deployment's steps: under a lease on its row, one transaction
per step, and on a failure every step done undone in reverse, so a
deployment succeeds whole or leaves nothing.

The lease is taken with a conditional UPDATE (free, run out, or already
ours) and renewed inside each step's transaction: a worker that lost it
(it was too slow, another took over) writes nothing more. A worker killed
mid-way leaves the lease to run out; the sweep (``tasks.deployment_sweep``,
on beat) or the broker's redelivery runs the deployment again, which
resumes after the last step done (steps found done are skipped), or goes
on rolling back."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit
from portal.models import AuditRecord
from solutions.deploy.steps import STEPS, Context, actor_of
from solutions.models import Deployment, DeploymentStep

log = logging.getLogger(__name__)

State = Deployment.State
UNFINISHED = [State.PLANNED, State.RUNNING, State.ROLLING_BACK, State.REMOVING]
# Test hooks (tests/solutions/deploy_checkpoints.py): called with a point's
# name, the deployment and the step's position; nothing in the portal adds any.
checkpoint_hooks: list[Callable[[str, int, int], None]] = []
# Test hook: called before each step is done; raising fails that step.
before_step_hooks: list[Callable[[DeploymentStep], None]] = []


class LeaseLost(Exception):
    pass


def _checkpoint(name: str, deployment_id: int, position: int) -> None:
    for hook in checkpoint_hooks:
        hook(name, deployment_id, position)


def _lease_seconds() -> int:
    return settings.PORTAL_DEPLOY_LEASE_SECONDS


def take_lease(deployment_id: int, owner: str) -> bool:
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    return bool(
        Deployment.objects.filter(free, pk=deployment_id, state__in=UNFINISHED).update(
            lease_owner=owner, lease_until=now + timedelta(seconds=_lease_seconds())
        )
    )


def _hold(deployment_id: int, owner: str, **changes) -> None:
    """Renew the lease (and change the row), inside the caller's
    transaction; ``LeaseLost`` when it is no longer ours."""
    until = timezone.now() + timedelta(seconds=_lease_seconds())
    changes.setdefault("lease_until", until)
    if not Deployment.objects.filter(pk=deployment_id, lease_owner=owner).update(**changes):
        raise LeaseLost()


def current_steps(deployment: Deployment) -> list[DeploymentStep]:
    """The steps of the deployment's latest run (a deploy, an upgrade, an
    edit or a removal), in order."""
    steps = list(deployment.steps.order_by("position"))
    if not steps:
        return []
    latest = max(step.undo.get("run", 1) for step in steps)
    return [step for step in steps if step.undo.get("run", 1) == latest]


def mode_of(steps: list[DeploymentStep]) -> str:
    return steps[0].undo.get("args", {}).get("mode", "deploy") if steps else "deploy"


def run(deployment_id: int, *, owner: str | None = None) -> str:
    """Run (or resume, or go on rolling back) the deployment; what became
    of it: its state, or "busy" when another worker holds it, "lost" when
    the lease went to another mid-way."""
    owner = owner or uuid.uuid4().hex
    if not take_lease(deployment_id, owner):
        return "busy"
    deployment = Deployment.objects.select_related("solution").get(pk=deployment_id)
    steps = current_steps(deployment)
    mode = mode_of(steps)
    ctx = Context(deployment, actor_of(deployment, steps[0] if steps else None))
    try:
        if deployment.state == State.PLANNED:
            moving = State.REMOVING if mode == "remove" else State.RUNNING
            with transaction.atomic():
                _hold(deployment_id, owner, state=moving)
            deployment.state = moving
        forward = deployment.state in (State.RUNNING, State.REMOVING)
        if forward and _forward(ctx, steps, owner):
            return _finish(ctx, steps, owner, mode, ok=True)
        return _rollback(ctx, steps, owner, mode)
    except LeaseLost:
        log.warning("Deployment %s: the lease went to another worker.", deployment_id)
        return "lost"


def _forward(ctx: Context, steps: list[DeploymentStep], owner: str) -> bool:
    deployment_id = ctx.deployment.pk
    for step in steps:
        if step.state == DeploymentStep.State.DONE:
            continue  # done before a worker died: its work is committed with it
        _checkpoint("before_step", deployment_id, step.position)
        try:
            with transaction.atomic():
                _hold(deployment_id, owner)
                for hook in before_step_hooks:
                    hook(step)
                do, _ = STEPS[step.action]
                undo = do(ctx, step) or {}
                step.undo = {**step.undo, **undo}
                step.state = DeploymentStep.State.DONE
                step.done_at = timezone.now()
                step.save(update_fields=["undo", "state", "done_at"])
        except LeaseLost:
            raise
        except Exception as error:  # any refusal: the whole run is undone
            message = _message(error)
            log.info("Deployment %s step %s failed: %s", deployment_id, step.position, message)
            with transaction.atomic():
                _hold(
                    deployment_id,
                    owner,
                    state=State.ROLLING_BACK,
                    error=f"{step.detail or step.action}: {message}"[:500],
                )
                DeploymentStep.objects.filter(pk=step.pk).update(state=DeploymentStep.State.FAILED)
            return False
        _checkpoint("after_step", deployment_id, step.position)
    return True


def _message(error: Exception) -> str:
    messages = getattr(error, "messages", None)
    return " ".join(messages) if messages else (str(error) or error.__class__.__name__)


def _rollback(ctx: Context, steps: list[DeploymentStep], owner: str, mode: str) -> str:
    deployment_id = ctx.deployment.pk
    Deployment.objects.filter(pk=deployment_id, lease_owner=owner).exclude(
        state=State.ROLLING_BACK
    ).update(state=State.ROLLING_BACK)
    for step in reversed(steps):
        if step.state != DeploymentStep.State.DONE:
            continue
        try:
            with transaction.atomic():
                _hold(deployment_id, owner)
                _, undo = STEPS[step.action]
                undo(ctx, step)
                step.state = DeploymentStep.State.UNDONE
                step.save(update_fields=["state"])
        except LeaseLost:
            raise
        except Exception as error:
            # Left to the sweep to try again once the lease runs out.
            log.error("Deployment %s: undoing step %s failed: %s", deployment_id, step.position,
                      _message(error))  # fmt: skip
            return State.ROLLING_BACK
        _checkpoint("after_undo", deployment_id, step.position)
    return _finish(ctx, steps, owner, mode, ok=False)


AUDITED = {
    "deploy": AuditRecord.Action.SOLUTION_DEPLOYED,
    "upgrade": AuditRecord.Action.SOLUTION_UPGRADED,
    "edit": AuditRecord.Action.SOLUTION_DEPLOYMENT_EDITED,
    "remove": AuditRecord.Action.SOLUTION_DEPLOYMENT_REMOVED,
}
DONE_WORDS = {
    "deploy": "Deployed",
    "upgrade": "Upgraded",
    "edit": "Configuration edited",
    "remove": "Removed",
}


def _finish(ctx: Context, steps: list[DeploymentStep], owner: str, mode: str, *, ok: bool) -> str:
    deployment = Deployment.objects.select_related("solution", "version").get(pk=ctx.deployment.pk)
    if ok:
        state = State.REMOVED if mode == "remove" else State.SUCCEEDED
        error = ""
    else:
        # A failed deploy leaves nothing; a failed upgrade, edit or removal
        # leaves the deployment as it was before.
        state = State.FAILED if mode == "deploy" else State.SUCCEEDED
        error = deployment.error
        if mode != "deploy":
            error = (
                f"The {'removal' if mode == 'remove' else mode} failed and was rolled back: {error}"
            )
    with transaction.atomic():
        _hold(
            deployment.pk,
            owner,
            state=state,
            error=error[:500],
            finished_at=timezone.now(),
            lease_owner="",
            lease_until=None,
        )
        name = f"{deployment.solution.name} v{deployment.version.number}"
        if ok:
            detail = f"{DONE_WORDS[mode]}: {name} in {deployment.folder_path}."
        else:
            detail = f"Rolled back ({mode}): {name} in {deployment.folder_path}. {error}"
        audit.record(
            AUDITED[mode] if ok else AuditRecord.Action.SOLUTION_DEPLOY_FAILED,
            actor=ctx.actor,
            folder_id=deployment.folder_id,
            target=("deployment", deployment.pk, name),
            detail=detail[:500],
        )
    return state


def due(limit: int = 100) -> list[int]:
    """Unfinished deployments nobody is running: their lease ran out (a
    worker died), or none was ever taken and the task seems lost."""
    now = timezone.now()
    stale = now - timedelta(seconds=_lease_seconds())
    return list(
        Deployment.objects.filter(state__in=UNFINISHED)
        .filter(Q(lease_until__lt=now) | Q(lease_until__isnull=True, updated_at__lt=stale))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
