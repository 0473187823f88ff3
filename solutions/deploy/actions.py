"""What pages and the API call to deploy, upgrade, edit and remove: each
runs the preflight, refuses when it finds a blocking problem (nothing is
written then), records the steps on the deployment row and queues the
worker task after commit. Permissions are the caller's to ask
(``portal.permissions``: Solutions - Deploy)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from connections.transfer.import_ import find_folder
from solutions.deploy.preflight import (
    Preflight,
    preflight,
    removal_plan,
    split_path,
)
from solutions.deploy.tasks import run_deployment_task
from solutions.models import Deployment, DeploymentStep, SolutionVersion
from solutions.package import DeploymentSettings


class DeployRefused(Exception):
    """The preflight found blocking problems: nothing was written."""

    def __init__(self, check: Preflight):
        self.preflight = check
        super().__init__("; ".join(str(p) for p in check.blocking))


class DeploymentBusy(Exception):
    """The deployment is being deployed, upgraded or removed now (or is gone)."""


def _record_steps(deployment: Deployment, check: Preflight, actor, **begin) -> None:
    last = deployment.steps.aggregate(position=Max("position"))
    runs = [s.undo.get("run", 1) for s in deployment.steps.only("undo")]
    run = (max(runs) if runs else 0) + 1
    position = last["position"] or 0
    rows = []
    for step in check.steps:
        if not step.action:
            continue  # left alone: nothing to do
        args = dict(step.args)
        if step.action == "begin":
            args.update(actor=getattr(actor, "pk", None), **begin)
        position += 1
        rows.append(
            DeploymentStep(
                deployment=deployment,
                position=position,
                action=step.action,
                component=step.component,
                undo={"run": run, "args": args},
                detail=(step.label or step.action)[:500],
            )
        )
    DeploymentStep.objects.bulk_create(rows)


def deploy(*, version: SolutionVersion, settings: DeploymentSettings, actor) -> Deployment:
    """Deploy ``version`` into ``settings.folder`` (created when missing)."""
    check = preflight(version, settings, actor)
    if not check.ok:
        raise DeployRefused(check)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            solution=version.solution,
            version=version,
            folder=find_folder(split_path(check.folder_path)),
            folder_path=check.folder_path,
            configuration=check.settings.model_dump(mode="json", exclude_none=True),
            created_by=actor,
        )
        _record_steps(deployment, check, actor, mode="deploy")
        run_deployment_task.delay_on_commit(deployment.pk)
    return deployment


def _locked_finished(deployment: Deployment) -> Deployment:
    row = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if row.state != Deployment.State.SUCCEEDED:
        raise DeploymentBusy(
            f"The deployment is {row.get_state_display().lower()}: "
            + (
                "wait until it has finished."
                if row.state not in (Deployment.State.FAILED, Deployment.State.REMOVED)
                else "there is nothing deployed to change."
            )
        )
    return row


def upgrade(
    *,
    deployment: Deployment,
    version: SolutionVersion,
    settings: DeploymentSettings,
    actor,
    mode: str = "upgrade",
) -> Deployment:
    """Deploy ``version`` over the deployment (``mode`` "edit": the same
    version with changed unlocked fields)."""
    if version.solution_id != deployment.solution_id:
        raise DeploymentBusy("That version is of another solution.")
    check = preflight(version, settings, actor, deployment=deployment, mode=mode)
    if not check.ok:
        raise DeployRefused(check)
    with transaction.atomic():
        row = _locked_finished(deployment)
        _record_steps(
            row,
            check,
            actor,
            mode=mode,
            version=version.pk,
            configuration=check.settings.model_dump(mode="json", exclude_none=True),
        )
        row.state, row.error, row.finished_at = Deployment.State.PLANNED, "", None
        row.save(update_fields=["state", "error", "finished_at", "updated_at"])
        run_deployment_task.delay_on_commit(row.pk)
    return row


def settings_for_edit(deployment: Deployment, data: dict | None = None) -> DeploymentSettings:
    """The deployment's choices with ``data``'s unlocked fields changed; the
    Authentication types and linked connections as deployed (an edit never
    changes those)."""
    current = DeploymentSettings.model_validate(
        {**deployment.configuration, "folder": deployment.folder_path}
    )
    merged = current.model_dump(exclude_none=True)
    for section in ("connections", "triggers", "processes"):
        for key, values in ((data or {}).get(section) or {}).items():
            merged.setdefault(section, {}).setdefault(key, {}).update(values)
    for item in deployment.items.filter(kind="connection"):
        choice = merged.setdefault("connections", {}).setdefault(item.component, {})
        choice.setdefault("auth", item.auth_choice)
        if item.auth_choice == "link_existing":
            choice.setdefault("link", item.object_id)
    return DeploymentSettings.model_validate(merged)


def edit_configuration(
    *, deployment: Deployment, settings: DeploymentSettings, actor
) -> Deployment:
    """Edit deployment configuration: unlocked names, descriptions, filters
    and the like; never the Authentication type nor a linked connection."""
    return upgrade(
        deployment=deployment, version=deployment.version, settings=settings, actor=actor,
        mode="edit",
    )  # fmt: skip


def remove(*, deployment: Deployment, actor) -> Deployment:
    """Remove what the deployment made, apart from connections, which stay."""
    with transaction.atomic():
        row = _locked_finished(deployment)
        _record_steps(row, removal_plan(row), actor, mode="remove")
        row.state, row.error, row.finished_at = Deployment.State.PLANNED, "", None
        row.save(update_fields=["state", "error", "finished_at", "updated_at"])
        run_deployment_task.delay_on_commit(row.pk)
    return row
