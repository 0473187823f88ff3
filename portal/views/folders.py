"""Folder pages: the Connections tab, subfolders and access."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from portal import actions
from portal.forms import AssignmentForm, FolderForm
from portal.htmx import render_page, vary_on_htmx
from portal.models import RoleAssignment
from portal.permissions import Action, folder_for, get_folder_or_404, require
from portal.workspaces import ensure_personal_workspace


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    workspace = ensure_personal_workspace(request.user)
    return redirect("folder_connections", folder_id=workspace.pk)


@require_GET
@login_required
def folder_detail(request: HttpRequest, folder_id: int) -> HttpResponse:
    get_folder_or_404(request.user, folder_id)
    return redirect("folder_connections", folder_id=folder_id)


@require_http_methods(["GET", "POST"])
@login_required
def folder_subfolders(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.VIEW_FOLDER)
    form = FolderForm()
    if request.method == "POST":
        require(request.user, Action.MANAGE_FOLDER_ACCESS, folder)
        form = FolderForm(request.POST)
        if form.is_valid():
            try:
                child = actions.create_folder(
                    parent=folder, actor=request.user, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Folder {child.name} created.")
                return redirect("folder_subfolders", folder_id=folder.pk)
    children = folder.children.order_by("name").annotate(subfolder_count=Count("children"))
    return render(
        request,
        "portal/folder_subfolders.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "subfolders",
            "children": children,
            "form": form,
        },
        status=400 if form.errors else 200,
    )


def _access_context(folder, perms, form) -> dict:
    assignments = (
        RoleAssignment.objects.applying_to(folder)
        .select_related("folder", "role", "user", "group")
        .order_by("folder__path", "role__name", "pk")
    )
    return {
        "folder": folder,
        "perms_here": perms,
        "tab": "access",
        "assignments": assignments,
        "form": form,
    }


@require_http_methods(["GET", "POST"])
@login_required
def folder_access(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_FOLDER_ACCESS)
    form = AssignmentForm()
    if request.method == "POST":
        form = AssignmentForm(request.POST)
        if form.is_valid():
            try:
                assignment = actions.assign_role(
                    folder=folder,
                    role=form.cleaned_data["role"],
                    user=form.cleaned_data["user"],
                    group=form.cleaned_data["group"],
                    assigned_by=request.user,
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"{assignment.principal_name} is now {assignment.role}.")
                if request.htmx:
                    return vary_on_htmx(HttpResponseClientRedirect(request.path))
                return vary_on_htmx(redirect("folder_access", folder_id=folder.pk))
    return render_page(
        request,
        "portal/folder_access.html",
        _access_context(folder, perms, form),
        partials=("assignment-form",),
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def assignment_remove(request: HttpRequest, folder_id: int, assignment_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_FOLDER_ACCESS)
    # Only assignments made on this folder are removed here; inherited ones
    # are removed on the folder they were made on.
    assignment = get_object_or_404(
        RoleAssignment.objects.select_related("role", "user", "group"),
        pk=assignment_id,
        folder=folder,
    )
    if request.method == "POST":
        actions.remove_assignment(assignment=assignment, actor=request.user)
        messages.success(
            request, f"{assignment.principal_name} no longer has {assignment.role} here."
        )
        return redirect("folder_access", folder_id=folder.pk)
    return render(
        request,
        "portal/assignment_confirm_remove.html",
        {"folder": folder, "assignment": assignment, "tab": "access", "perms_here": perms},
    )
