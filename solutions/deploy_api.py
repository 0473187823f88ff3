"""Deployments through the runtime API, so a pipeline deploys a published
version into test and then production with no clicks: the preflight, deploy
with a deployment settings document (``solutions.package.DeploymentSettings``,
validated as the pages' form is: the same document, the same preflight), a
deployment's status with its steps, upgrade (with its preflight), edit
configuration and removal. The same permission rules and domain functions as
the pages (``solutions.deploy.access``, ``solutions.deploy.actions``); an API
key's folder scope narrows them. The writes are refused in read-only mode by
the API-wide guard (``connections.api.read_only``).

A settings document::

    {"folder": "Shared/Finance/Invoices",
     "connections": {"connection-12": {"auth": "link_existing", "link": 40}},
     "processes": {"process-3": {"name": "Book invoices"}},
     "triggers": {"trigger-7": {"enabled": false}}}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest
from ninja import Body, Router, Schema, Status

from connections.api.read_only import WHILE_READ_ONLY
from connections.api.schemas import Conflict, Id, answers
from connections.transfer.format import DocumentRefused
from portal.api_keys import in_scope
from portal.permissions import Action
from solutions.api import scoped_solution
from solutions.deploy import actions
from solutions.deploy.access import deployment_for, deployments_seen_by, home_folder
from solutions.deploy.engine import UNFINISHED, current_steps, mode_of
from solutions.deploy.preflight import (
    Preflight,
    may_deploy_into,
    nearest_existing,
    preflight,
    split_path,
)
from solutions.models import Deployment, SolutionVersion
from solutions.package import DeploymentSettings, parse_settings

router = Router()

SETTINGS_DOCUMENT = (
    "The body is a deployment settings document: folder (a path such as "
    "Shared/Finance/Invoices; a folder that does not exist is created), and by component key "
    'the choices its author did not lock: connections {"auth": "configurable" | '
    '"authenticate_after" | "link_existing", "link": a connection id, "name", '
    '"description"}, processes {"name", "description", "webhook_url", "job_queue"}, '
    'triggers {"filters", "enabled", "include_existing"}.'
)


class PlanStepOut(Schema):
    action: str
    step: str
    component: str
    label: str
    note: str


class ProblemOut(Schema):
    where: str
    message: str
    blocking: bool


class PreflightOut(Schema):
    folder: str
    ok: bool
    summary: str
    plan: list[PlanStepOut]
    problems: list[ProblemOut]


class StepOut(Schema):
    position: int
    action: str
    component: str
    detail: str
    state: str
    done_at: datetime | None


class ItemOut(Schema):
    component: str
    kind: str
    object_id: int | None
    created: bool
    auth: str
    connector: str


class DeploymentOut(Schema):
    id: int
    solution_id: int
    version: int
    upgraded_from: int | None
    folder: str
    folder_id: int | None
    state: str
    state_label: str
    finished: bool
    error: str
    mode: str
    configuration: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    steps: list[StepOut]
    items: list[ItemOut]


class DeploymentList(Schema):
    items: list[DeploymentOut]


def deployment_out(deployment: Deployment) -> dict:
    steps = current_steps(deployment)
    return {
        "id": deployment.pk,
        "solution_id": deployment.solution_id,
        "version": deployment.version.number,
        "upgraded_from": deployment.upgraded_from.number if deployment.upgraded_from else None,
        "folder": deployment.folder_path,
        "folder_id": deployment.folder_id,
        "state": deployment.state,
        "state_label": deployment.get_state_display(),
        "finished": deployment.state not in UNFINISHED,
        "error": deployment.error,
        "mode": mode_of(steps),
        "configuration": deployment.configuration,
        "created_at": deployment.created_at,
        "finished_at": deployment.finished_at,
        "steps": [
            {
                "position": s.position,
                "action": s.action,
                "component": s.component,
                "detail": s.detail,
                "state": s.state,
                "done_at": s.done_at,
            }
            for s in steps
            if s.action != "begin"
        ],
        "items": [
            {
                "component": i.component,
                "kind": i.kind,
                "object_id": i.object_id,
                "created": i.created,
                "auth": i.auth_choice,
                "connector": i.connector_key,
            }
            for i in deployment.items.all()
        ],
    }


def _fresh(deployment: Deployment) -> dict:
    row = Deployment.objects.select_related("version", "upgraded_from").get(pk=deployment.pk)
    return deployment_out(row)


def _nul_free(value: Any, where: str = "") -> list[str]:
    """Where a string of the document holds a NUL character (PostgreSQL
    cannot store one; the pages' forms refuse it too)."""
    if isinstance(value, str):
        return [where or "(top level)"] if "\x00" in value else []
    if isinstance(value, dict):
        found = []
        for key, inner in value.items():
            place = f"{where}.{key}" if where else str(key)
            found += [place] if "\x00" in str(key) else _nul_free(inner, place)
        return found
    if isinstance(value, list):
        return [p for i, inner in enumerate(value) for p in _nul_free(inner, f"{where}[{i}]")]
    return []


def _settings(document: dict[str, Any]) -> DeploymentSettings:
    """The document validated, or 422 naming each problem by where it is."""
    bad = _nul_free(document)
    if bad:
        raise ValidationError(
            {place: [f"{place}: must not contain a NUL character (U+0000)"] for place in bad}
        )
    try:
        return parse_settings(document)
    except DocumentRefused as error:
        raise _refused(error.problems) from None


def _refused(problems) -> ValidationError:
    errors: dict[str, list[str]] = {}
    for problem in problems:
        text = str(problem)
        where = problem.where if hasattr(problem, "where") else text.partition(": ")[0]
        errors.setdefault(where, []).append(text)
    return ValidationError(errors)


def _refused_preflight(check: Preflight) -> ValidationError:
    return _refused(check.blocking)


def _version(request: HttpRequest, solution_id: int, number: int) -> SolutionVersion:
    solution = scoped_solution(request, solution_id, Action.VIEW_SOLUTIONS)
    version = solution.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    version.solution = solution
    return version


def _may_deploy_into(request: HttpRequest, folder_path: str) -> None:
    """403 unless the user holds Solutions - Deploy where the folder is (or
    would be made), within the key's folder scope."""
    names = split_path(folder_path)
    key = request.auth
    if key.folder_id:
        anchor, _ = nearest_existing(names)
        if anchor is None or not in_scope(key, anchor):
            raise PermissionDenied(
                f"This API key is limited to the folder {key.folder.path}: deploy within it."
            )
    if names and not may_deploy_into(request.user, names):
        raise PermissionDenied(f"You do not have Solutions - Deploy in {'/'.join(names)}.")


def _deployment(request: HttpRequest, deployment_id: int, action: Action) -> Deployment:
    deployment = deployment_for(request.user, deployment_id, Action.VIEW_SOLUTIONS)
    folder = home_folder(deployment)
    if request.auth.folder_id and (folder is None or not in_scope(request.auth, folder)):
        raise Http404("No such deployment.")
    if action != Action.VIEW_SOLUTIONS:
        deployment = deployment_for(request.user, deployment_id, action)
    return deployment


@router.post(
    "/solutions/{int:solution_id}/versions/{int:number}/preflight",
    response=answers({200: PreflightOut}, 400, 404, 422),
    summary="Preflight a deployment",
    openapi_extra=WHILE_READ_ONLY,  # it writes nothing
    description="What deploying the version with this settings document would do (the plan) "
    "and what would not work (the problems; ok is false when one blocks). Nothing is written. "
    + SETTINGS_DOCUMENT,
)
def preflight_deployment(
    request: HttpRequest, solution_id: int, number: int, document: Body[dict[str, Any]]
) -> dict:
    version = _version(request, solution_id, number)
    settings = _settings(document)
    return preflight(version, settings, request.user).as_dict()


@router.post(
    "/solutions/{int:solution_id}/versions/{int:number}/deployments",
    response=answers({202: DeploymentOut}, 400, 403, 404, 422),
    summary="Deploy a version",
    description="Runs the preflight and refuses the deployment (422, each blocking problem "
    "by where it is) until it finds none; otherwise records the steps and queues them: "
    "follow GET /deployments/{id} until finished. " + SETTINGS_DOCUMENT,
)
def deploy_version(
    request: HttpRequest, solution_id: int, number: int, document: Body[dict[str, Any]]
):
    version = _version(request, solution_id, number)
    settings = _settings(document)
    _may_deploy_into(request, settings.folder)
    try:
        deployment = actions.deploy(version=version, settings=settings, actor=request.user)
    except actions.DeployRefused as refused:
        raise _refused_preflight(refused.preflight) from None
    return Status(202, _fresh(deployment))


@router.get(
    "/solutions/{int:solution_id}/deployments",
    response=answers({200: DeploymentList}, 404),
    summary="A solution's deployments",
    description="Those in folders where you hold Solutions - View or Deploy (the latest 200).",
)
def list_deployments(request: HttpRequest, solution_id: int) -> dict:
    solution = scoped_solution(request, solution_id, Action.VIEW_SOLUTIONS)
    deployments = (
        deployments_seen_by(request.user, solution)
        .select_related("version", "upgraded_from", "folder")
        .prefetch_related("items", "steps")
        .order_by("-created_at", "-pk")[:200]
    )
    key = request.auth
    shown = [
        d
        for d in deployments
        if not key.folder_id or (d.folder is not None and in_scope(key, d.folder))
    ]
    return {"items": [deployment_out(d) for d in shown]}


@router.get(
    "/deployments/{int:deployment_id}",
    response=answers({200: DeploymentOut}, 404),
    summary="A deployment's status and steps",
    description="state moves planned → running → succeeded, or → rolling_back → failed "
    "(nothing left behind); finished says whether to stop polling. The steps are those "
    "of its latest run (deploy, upgrade, edit or removal).",
)
def get_deployment(request: HttpRequest, deployment_id: int) -> dict:
    deployment = _deployment(request, deployment_id, Action.VIEW_SOLUTIONS)
    return _fresh(deployment)


def _upgrade_settings(deployment: Deployment, document: dict[str, Any]) -> DeploymentSettings:
    given = document.get("folder")
    if given is not None and split_path(str(given)) != split_path(deployment.folder_path):
        raise ValidationError(
            {"folder": [f"folder: an upgrade stays in the deployment's folder, "
                        f"{deployment.folder_path}."]}
        )  # fmt: skip
    # The deployment's earlier choices hold unless the document changes them.
    merged = {**document, "folder": deployment.folder_path}
    for section in ("connections", "processes", "triggers"):
        earlier = (deployment.configuration or {}).get(section) or {}
        given = document.get(section) if isinstance(document.get(section), dict) else {}
        if earlier or given:
            merged[section] = {
                key: {**earlier.get(key, {}), **(given.get(key) or {})}
                if isinstance(given.get(key, {}), dict)
                else given[key]
                for key in {*earlier, *given}
            }
    return _settings(merged)


def _newer_version(deployment: Deployment, number: int) -> SolutionVersion:
    version = deployment.solution.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    return version


@router.post(
    "/deployments/{int:deployment_id}/upgrade/preflight",
    response=answers({200: PreflightOut}, 400, 403, 404, 422),
    summary="Preflight an upgrade",
    openapi_extra=WHILE_READ_ONLY,  # it writes nothing
    description="What deploying version (a query parameter) over the deployment would do, "
    "nothing written. The body is a settings document; its folder may be left out (an "
    "upgrade stays in the deployment's folder). Link to existing and the Authentication "
    "types may change here.",
)
def preflight_upgrade(
    request: HttpRequest, deployment_id: int, version: Id, document: Body[dict[str, Any]]
) -> dict:
    deployment = _deployment(request, deployment_id, Action.DEPLOY_SOLUTIONS)
    target = _newer_version(deployment, version)
    settings = _upgrade_settings(deployment, document)
    return preflight(
        target, settings, request.user, deployment=deployment, mode="upgrade"
    ).as_dict()


@router.post(
    "/deployments/{int:deployment_id}/upgrade",
    response=answers({202: DeploymentOut}, 400, 403, 404, 409, 422),
    summary="Upgrade a deployment",
    description="Deploys version (a query parameter) over the deployment: triggers in both "
    "versions change in place and keep their cursor, those the new version drops are "
    "deleted, connections are never deleted. Refused (422) while the preflight finds a "
    "blocking problem; 409 while the deployment runs, or once removed.",
)
def upgrade_deployment(
    request: HttpRequest, deployment_id: int, version: Id, document: Body[dict[str, Any]]
):
    deployment = _deployment(request, deployment_id, Action.DEPLOY_SOLUTIONS)
    target = _newer_version(deployment, version)
    settings = _upgrade_settings(deployment, document)
    try:
        actions.upgrade(deployment=deployment, version=target, settings=settings,
                        actor=request.user)  # fmt: skip
    except actions.DeployRefused as refused:
        raise _refused_preflight(refused.preflight) from None
    except actions.DeploymentBusy as error:
        raise Conflict(str(error)) from None
    return Status(202, _fresh(deployment))


@router.patch(
    "/deployments/{int:deployment_id}/configuration",
    response=answers({202: DeploymentOut}, 400, 403, 404, 409, 422),
    summary="Edit deployment configuration",
    description="Changes unlocked names, descriptions, filters and the like; the body holds "
    "only what changes (connections, processes, triggers by component key). Never Link to "
    "existing nor another Authentication type: those need an upgrade (422).",
)
def edit_deployment_configuration(
    request: HttpRequest, deployment_id: int, document: Body[dict[str, Any]]
):
    deployment = _deployment(request, deployment_id, Action.DEPLOY_SOLUTIONS)
    if "folder" in document and split_path(str(document["folder"])) != split_path(
        deployment.folder_path
    ):
        raise ValidationError({"folder": ["folder: an edit stays in the deployment's folder."]})
    changes = _settings({**document, "folder": deployment.folder_path})
    settings = actions.settings_for_edit(
        deployment, changes.model_dump(mode="json", exclude_unset=True, exclude={"folder"})
    )
    try:
        actions.edit_configuration(deployment=deployment, settings=settings, actor=request.user)
    except actions.DeployRefused as refused:
        raise _refused_preflight(refused.preflight) from None
    except actions.DeploymentBusy as error:
        raise Conflict(str(error)) from None
    return Status(202, _fresh(deployment))


@router.delete(
    "/deployments/{int:deployment_id}",
    response=answers({202: DeploymentOut}, 403, 404, 409),
    summary="Remove a deployment",
    description="Removes the triggers and processes the deployment made (and the folders it "
    "made once empty); its connections stay, every one. 409 while it runs, or once removed.",
)
def remove_deployment(request: HttpRequest, deployment_id: int):
    deployment = _deployment(request, deployment_id, Action.DEPLOY_SOLUTIONS)
    try:
        actions.remove(deployment=deployment, actor=request.user)
    except actions.DeploymentBusy as error:
        raise Conflict(str(error)) from None
    return Status(202, _fresh(deployment))
