"""Authoring pages: the list of solutions, a new solution from a source
folder, a solution's page with its Components panel (add by picking, edit
properties, lock toggles, remove with confirmation), Build and publish, its
versions with Download, and Upload package. Every view asks
``solutions.access`` (over ``portal.permissions``); the writes are the
domain's (``solutions.authoring``, ``solutions.publishing``)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from connections.catalog import get_catalog
from connections.models import Connection, Process, Trigger
from connections.transfer.format import DocumentRefused
from portal.htmx import render_page, vary_on_htmx
from portal.permissions import Action
from solutions import authoring, publishing
from solutions.access import (
    author_folders,
    require_author_somewhere,
    solution_for,
    solutions_where,
    upload_folder_for,
)
from solutions.authoring import LABELS, PROPERTIES, Kind
from solutions.forms import ComponentForm, NewSolutionForm, PublishForm, UploadForm
from solutions.models import Component, Solution
from solutions.package import parse

SOLUTIONS_PER_PAGE = 25
PARTIALS = ("components",)


@require_GET
@login_required
def solution_list(request: HttpRequest) -> HttpResponse:
    listed = (
        solutions_where(request.user)
        .select_related("source_folder")
        .prefetch_related("versions")
        .order_by("name")
    )
    page = Paginator(listed, SOLUTIONS_PER_PAGE).get_page(request.GET.get("page"))
    may_author = author_folders(request.user).exists()
    return render(
        request,
        "solutions/list.html",
        {"page": page, "solutions": page.object_list, "may_author": may_author},
    )


@require_http_methods(["GET", "POST"])
@login_required
def solution_new(request: HttpRequest) -> HttpResponse:
    require_author_somewhere(request.user)
    form = NewSolutionForm(request.POST or None, folders=list(author_folders(request.user)))
    if request.method == "POST" and form.is_valid():
        try:
            solution = authoring.create_solution(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                source_folder=form.chosen_folder(),
                actor=request.user,
            )
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
        else:
            messages.success(request, f"{solution.name} was created: add its components.")
            return redirect("solution_detail", solution.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "solutions/new.html", {"form": form}, status=status)


def _shown(name: str, value, auth_labels: dict[str, str]) -> str:
    """A property's value as the Components panel shows it."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v) or "None"
    if name == "auth_type":
        return auth_labels.get(value, value or "")
    return "" if value is None else str(value)


def _title(component: Component) -> str:
    obj = component.object
    if component.kind == Kind.TRIGGER:
        if obj is None:
            return "Event trigger (deleted)"
        return f"{obj.event_key} on {obj.connection.name}, starts {obj.process.name}"
    return component.properties.get("name") or component.key


def _components(solution: Solution) -> dict[str, list[Component]]:
    """The solution's components by kind, each with its object (None when
    deleted), a title and its properties as (name, label, shown value,
    locked) rows."""
    grouped: dict[str, list[Component]] = {kind: [] for kind in Kind.values}
    components = solution.components.select_related(
        "connection__folder", "trigger__connection", "trigger__process", "process__folder"
    ).order_by("kind", "pk")
    catalog = get_catalog()
    for component in components:
        component.object = authoring.object_of(component)
        auth_labels = {}
        if component.kind == Kind.CONNECTION and component.object is not None:
            connector = catalog.get(component.object.connector_key)
            auth_labels = (
                {a.type.value: a.display_label for a in connector.auth_types} if connector else {}
            )
        component.title = _title(component)
        component.rows = [
            (
                name,
                LABELS[component.kind][name],
                _shown(name, component.properties.get(name), auth_labels),
                name in component.locked,
            )
            for name in PROPERTIES[component.kind]
        ]
        grouped[component.kind].append(component)
    return grouped


def _detail_context(request: HttpRequest, solution: Solution, perms, **more) -> dict:
    may_author = Action.AUTHOR_SOLUTIONS in perms
    grouped = _components(solution)
    return {
        "solution": solution,
        "perms_here": perms,
        "may_author": may_author,
        "component_groups": [
            ("Connections", grouped[Kind.CONNECTION]),
            ("Event triggers", grouped[Kind.TRIGGER]),
            ("Processes", grouped[Kind.PROCESS]),
        ],
        "has_components": any(grouped.values()),
        "candidates": authoring.candidates(solution, request.user) if may_author else None,
        "versions": list(solution.versions.select_related("published_by")),
        "publish_form": more.pop("publish_form", None) or PublishForm(),
        **more,
    }


@require_GET
@login_required
def solution_detail(request: HttpRequest, solution_id: int) -> HttpResponse:
    solution, perms = solution_for(request.user, solution_id, Action.VIEW_SOLUTIONS)
    return render_page(
        request,
        "solutions/detail.html",
        _detail_context(request, solution, perms),
        partials=PARTIALS,
    )


def _picked(request: HttpRequest, model, name: str):
    ids = [value for value in request.POST.getlist(name) if value.isdigit()]
    return list(model.objects.filter(pk__in=ids))


@require_POST
@login_required
def components_add(request: HttpRequest, solution_id: int) -> HttpResponse:
    """Add what was picked among the candidates (only those the author may see)."""
    solution, _ = solution_for(request.user, solution_id, Action.AUTHOR_SOLUTIONS)
    offered = authoring.candidates(solution, request.user)
    allowed = {
        "connection": {c.pk for c in offered.connections} | {c.pk for c in offered.required},
        "trigger": {t.pk for t in offered.triggers},
        "process": {p.pk for p in offered.processes},
    }
    picked = {
        "connections": [
            c for c in _picked(request, Connection, "connection") if c.pk in allowed["connection"]
        ],
        "triggers": [t for t in _picked(request, Trigger, "trigger") if t.pk in allowed["trigger"]],
        "processes": [
            p for p in _picked(request, Process, "process") if p.pk in allowed["process"]
        ],
    }
    if not any(picked.values()):
        messages.error(request, "Pick at least one component to add.")
        return redirect("solution_detail", solution.pk)
    try:
        added = authoring.add_components(solution, actor=request.user, **picked)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Added {len(added)} component{'s' if len(added) != 1 else ''}.")
    return redirect("solution_detail", solution.pk)


def _component_for(request: HttpRequest, solution_id: int, component_id: int):
    solution, perms = solution_for(request.user, solution_id, Action.AUTHOR_SOLUTIONS)
    component = solution.components.filter(pk=component_id).first()
    if component is None:
        raise Http404("No such component.")
    component.solution = solution
    return solution, component, perms


@require_http_methods(["GET", "POST"])
@login_required
def component_edit(request: HttpRequest, solution_id: int, component_id: int) -> HttpResponse:
    solution, component, _ = _component_for(request, solution_id, component_id)
    if authoring.object_of(component) is None:
        messages.error(request, f"{component.key} was deleted from its folder: remove it.")
        return redirect("solution_detail", solution.pk)
    form = ComponentForm(request.POST or None, component=component)
    if request.method == "POST" and form.is_valid():
        try:
            authoring.edit_component(
                component,
                properties=form.properties(),
                locked=form.cleaned_data["locked"],
                actor=request.user,
            )
        except ValidationError as error:
            form.refuse(error)
        else:
            messages.success(request, f"{component.get_kind_display()} {component.key} saved.")
            return redirect("solution_detail", solution.pk)
    return render(
        request,
        "solutions/component_edit.html",
        {"solution": solution, "component": component, "form": form},
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@login_required
def component_lock(request: HttpRequest, solution_id: int, component_id: int) -> HttpResponse:
    """Lock or unlock one property (the Components panel's toggles)."""
    solution, component, perms = _component_for(request, solution_id, component_id)
    name = request.POST.get("property", "")
    try:
        authoring.set_locked(component, name, request.POST.get("locked") == "1", actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    if request.htmx:
        return render_page(
            request,
            "solutions/detail.html",
            _detail_context(request, solution, perms),
            partials=PARTIALS,
        )
    return vary_on_htmx(redirect("solution_detail", solution.pk))


@require_http_methods(["GET", "POST"])
@login_required
def component_remove(request: HttpRequest, solution_id: int, component_id: int) -> HttpResponse:
    solution, component, _ = _component_for(request, solution_id, component_id)
    if request.method == "POST":
        keys = authoring.remove_component(component, actor=request.user)
        messages.success(request, f"Removed {', '.join(keys)} from {solution.name}.")
        if request.htmx:
            return HttpResponseClientRedirect(solution_url(solution))
        return vary_on_htmx(redirect("solution_detail", solution.pk))
    return render(
        request,
        "solutions/component_confirm_remove.html",
        {
            "solution": solution,
            "component": component,
            "also": authoring.removal_impact(component),
        },
    )


def solution_url(solution: Solution) -> str:
    return reverse("solution_detail", args=[solution.pk])


@require_POST
@login_required
def solution_publish(request: HttpRequest, solution_id: int) -> HttpResponse:
    """Build and publish the next version."""
    solution, perms = solution_for(request.user, solution_id, Action.AUTHOR_SOLUTIONS)
    form = PublishForm(request.POST)
    refused: list[str] = []
    if form.is_valid():
        try:
            version = publishing.publish(
                solution, notes=form.cleaned_data["notes"], actor=request.user
            )
        except publishing.PublishRefused as error:
            refused = error.problems
        except ValidationError as error:
            form.add_error("notes", error.message_dict.get("notes", error.messages))
        else:
            messages.success(request, f"Version {version.number} of {solution.name} published.")
            return redirect("solution_detail", solution.pk)
    context = _detail_context(request, solution, perms, publish_form=form, refused=refused)
    return render(request, "solutions/detail.html", context, status=400)


@require_GET
@login_required
def version_download(request: HttpRequest, solution_id: int, number: int) -> HttpResponse:
    solution, _ = solution_for(request.user, solution_id, Action.VIEW_SOLUTIONS)
    version = solution.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    version.solution = solution
    text = publishing.download_package(version, actor=request.user)
    response = HttpResponse(text, content_type="application/json")
    filename = publishing.package_filename(version)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_http_methods(["GET", "POST"])
@login_required
def solution_upload(request: HttpRequest) -> HttpResponse:
    """Upload package: a new version (flagged uploaded) of the solution of
    the package's name, or a new solution kept in the chosen folder."""
    require_author_somewhere(request.user)
    folders = list(author_folders(request.user))
    form = UploadForm(request.POST or None, request.FILES or None, folders=folders)
    refused: list[str] = []
    if request.method == "POST" and form.is_valid():
        raw = form.cleaned_data["package"]
        try:
            package = parse(raw)
            existing = publishing.solution_for_upload(package)
            folder = form.chosen_folder()
            if existing is None and folder is None:
                form.add_error("folder", "No solution here has this name: choose its folder.")
            else:
                upload_folder_for(request.user, folder, existing)
                uploaded = publishing.upload_package(
                    raw,
                    folder=folder,
                    actor=request.user,
                    filename=form.files["package"].name[:100],
                )
        except DocumentRefused as error:
            refused = error.problems
        except (PermissionDenied, Http404):
            form.add_error(
                None,
                "You may not add versions to the solution of that name: it needs "
                "Solutions - Author in its folder.",
            )
        else:
            if not form.errors:
                version = uploaded.version
                messages.success(
                    request,
                    f"Uploaded as version {version.number} of {version.solution.name}.",
                )
                return redirect("solution_detail", version.solution_id)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "solutions/upload.html", {"form": form, "refused": refused}, status=status
    )
