"""Deployment pages: Deploy a version (the form, then its preflight before
anything is written, then Deploy, refused while blocking problems remain),
a deployment's progress (polled with htmx until it has finished), a
solution's deployments, Edit deployment configuration, Upgrade to a newer
version (with its preflight) and Remove (asked first, naming the connections
that stay). Permissions: Solutions - View to see, Solutions - Deploy in the
target folder to change (``solutions.deploy.access``); the writes are
``solutions.deploy.actions``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling

from portal.htmx import render_page, requested_partial, vary_on_htmx
from portal.permissions import Action
from solutions.access import solution_for
from solutions.deploy import actions
from solutions.deploy.access import (
    deployment_for,
    deployments_seen_by,
    may_deploy,
    may_deploy_somewhere,
)
from solutions.deploy.engine import UNFINISHED, current_steps, mode_of
from solutions.deploy.forms import DeploymentForm, UpgradeVersionForm
from solutions.deploy.preflight import (
    connections_that_stay,
    manifest_of,
    preflight,
    removal_plan,
)
from solutions.models import Deployment, SolutionVersion

PROGRESS = ("deployment-progress",)


def _version(solution, number: int) -> SolutionVersion:
    version = solution.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    version.solution = solution
    return version


def _posted(request: HttpRequest):
    """The form's data on a POST (even an empty one), None on a GET."""
    return request.POST if request.method == "POST" else None


def _wants_preflight(request: HttpRequest) -> bool:
    return request.POST.get("step") != "deploy"


@require_http_methods(["GET", "POST"])
@login_required
def version_deploy(request: HttpRequest, solution_id: int, number: int) -> HttpResponse:
    """Deploy a version: the form; Preflight shows the plan and its problems
    (nothing written); Deploy runs the preflight again and records the steps."""
    solution, _ = solution_for(request.user, solution_id, Action.VIEW_SOLUTIONS)
    version = _version(solution, number)
    form = DeploymentForm(_posted(request), package=manifest_of(version), user=request.user)
    check = None
    if request.method == "POST" and form.is_valid():
        settings = form.settings()
        if settings is not None:
            check = preflight(version, settings, request.user)
            if not check.ok:
                form.refuse_preflight(check)
            elif not _wants_preflight(request):
                try:
                    deployment = actions.deploy(
                        version=version, settings=settings, actor=request.user
                    )
                except actions.DeployRefused as refused:
                    check = refused.preflight
                    form.refuse_preflight(check)
                else:
                    messages.success(request, f"Deploying {solution.name} v{version.number}.")
                    return redirect("deployment_detail", deployment.pk)
    status = 200
    if request.method == "POST" and (form.errors or (check and not check.ok)):
        status = 400
    return render(
        request,
        "solutions/deployments/deploy.html",
        {
            "solution": solution,
            "version": version,
            "form": form,
            "check": check,
            "may_deploy_somewhere": may_deploy_somewhere(request.user),
        },
        status=status,
    )


def _progress_context(deployment: Deployment, user) -> dict:
    steps = current_steps(deployment)
    finished = deployment.state not in UNFINISHED
    waiting = []
    if finished and deployment.state == Deployment.State.SUCCEEDED:
        waiting = [c for c in connections_that_stay(deployment) if c.state == "not_connected"]
    return {
        "deployment": deployment,
        "solution": deployment.solution,
        "steps": [s for s in steps if s.action != "begin"],
        "mode": mode_of(steps),
        "finished": finished,
        "to_authenticate": waiting,
        "may_change": finished
        and deployment.state == Deployment.State.SUCCEEDED
        and may_deploy(user, deployment),
    }


@require_GET
@login_required
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """A deployment and the steps of its latest run; the progress panel polls
    this page (htmx, targeting it) until the run has finished."""
    deployment = deployment_for(request.user, deployment_id, Action.VIEW_SOLUTIONS)
    context = _progress_context(deployment, request.user)
    response_class = HttpResponse
    if requested_partial(request, PROGRESS) and context["finished"]:
        response_class = HttpResponseStopPolling
    response = render_page(
        request,
        "solutions/deployments/detail.html",
        context,
        partials=PROGRESS,
        response_class=response_class,
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required
def solution_deployments(request: HttpRequest, solution_id: int) -> HttpResponse:
    solution, _ = solution_for(request.user, solution_id, Action.VIEW_SOLUTIONS)
    deployments = (
        deployments_seen_by(request.user, solution)
        .select_related("version", "folder", "created_by")
        .order_by("-created_at", "-pk")[:200]
    )
    return render(
        request,
        "solutions/deployments/list.html",
        {"solution": solution, "deployments": deployments},
    )


def _busy(request: HttpRequest, deployment: Deployment, error: Exception) -> HttpResponse:
    messages.error(request, str(error))
    return redirect("deployment_detail", deployment.pk)


@require_http_methods(["GET", "POST"])
@login_required
def deployment_edit(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """Edit deployment configuration: unlocked names, descriptions and the
    like; never Link to existing or another Authentication type."""
    deployment = deployment_for(request.user, deployment_id, Action.DEPLOY_SOLUTIONS)
    form = DeploymentForm(
        _posted(request),
        package=manifest_of(deployment.version),
        user=request.user,
        mode="edit",
        deployment=deployment,
    )
    check = None
    if request.method == "POST" and form.is_valid():
        settings = actions.settings_for_edit(deployment, form.document())
        check = preflight(
            deployment.version, settings, request.user, deployment=deployment, mode="edit"
        )
        if not check.ok:
            form.refuse_preflight(check)
        elif not _wants_preflight(request):
            try:
                actions.edit_configuration(
                    deployment=deployment, settings=settings, actor=request.user
                )
            except actions.DeployRefused as refused:
                check = refused.preflight
                form.refuse_preflight(check)
            except actions.DeploymentBusy as error:
                return _busy(request, deployment, error)
            else:
                messages.success(request, "Saving the deployment's configuration.")
                return redirect("deployment_detail", deployment.pk)
    status = 400 if request.method == "POST" and (form.errors or (check and not check.ok)) else 200
    return render(
        request,
        "solutions/deployments/edit.html",
        {"deployment": deployment, "solution": deployment.solution, "form": form, "check": check},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@login_required
def deployment_upgrade(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """Upgrade: a newer version over the deployment, with its preflight."""
    deployment = deployment_for(request.user, deployment_id, Action.DEPLOY_SOLUTIONS)
    newer = list(
        deployment.solution.versions.filter(number__gt=deployment.version.number)
        .order_by("-number")
        .values_list("number", flat=True)
    )
    chooser = UpgradeVersionForm(request.POST or request.GET or None, numbers=newer)
    number = chooser.cleaned_data["version"] if chooser.is_valid() else (newer or [None])[0]
    context = {
        "deployment": deployment,
        "solution": deployment.solution,
        "chooser": chooser,
        "newer": newer,
        "check": None,
        "form": None,
    }
    if number is None:
        return render(request, "solutions/deployments/upgrade.html", context)
    version = _version(deployment.solution, number)
    form = DeploymentForm(
        _posted(request),
        package=manifest_of(version),
        user=request.user,
        mode="upgrade",
        deployment=deployment,
    )
    context.update(version=version, form=form)
    if request.method == "POST" and form.is_valid():
        settings = form.settings(folder=deployment.folder_path)
        if settings is not None:
            check = preflight(
                version, settings, request.user, deployment=deployment, mode="upgrade"
            )
            context["check"] = check
            if not check.ok:
                form.refuse_preflight(check)
            elif not _wants_preflight(request):
                try:
                    actions.upgrade(
                        deployment=deployment, version=version, settings=settings,
                        actor=request.user,
                    )  # fmt: skip
                except actions.DeployRefused as refused:
                    context["check"] = refused.preflight
                    form.refuse_preflight(refused.preflight)
                except actions.DeploymentBusy as error:
                    return _busy(request, deployment, error)
                else:
                    messages.success(request, f"Upgrading to version {version.number}.")
                    return redirect("deployment_detail", deployment.pk)
    check = context["check"]
    status = 400 if request.method == "POST" and (form.errors or (check and not check.ok)) else 200
    return render(request, "solutions/deployments/upgrade.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def deployment_remove(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """Remove, asked first: what goes, and the connections that stay."""
    deployment = deployment_for(request.user, deployment_id, Action.DEPLOY_SOLUTIONS)
    if request.method == "POST":
        try:
            actions.remove(deployment=deployment, actor=request.user)
        except actions.DeploymentBusy as error:
            return vary_on_htmx(_busy(request, deployment, error))
        messages.success(request, "Removing the deployment; its connections stay.")
        return vary_on_htmx(redirect("deployment_detail", deployment.pk))
    return render(
        request,
        "solutions/deployments/remove.html",
        {
            "deployment": deployment,
            "solution": deployment.solution,
            "plan": removal_plan(deployment),
            "staying": connections_that_stay(deployment),
        },
    )
