"""A shared folder's Settings tab: rename it, move it, delete it.

Who may is ``portal.permissions.may_manage_folder`` (and
``may_move_folder_to`` for a destination); the rules of names and places
are ``portal.actions``'s, the same the admin asks. The tab itself opens for
anyone who manages the folder's access, and says so when changing the
folder itself needs more (Folder - Manage access in its parent)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from portal import actions
from portal.folder_tree import folder_name_paths
from portal.forms import TOP_LEVEL, DeleteFolderForm, FolderForm, MoveFolderForm
from portal.models import Folder
from portal.permissions import (
    Action,
    folder_for,
    folder_move_destinations,
    is_tenant_admin,
    manage_folder_refusal,
    may_manage_folder,
    require_may_manage_folder,
    require_may_move_folder_to,
)


def _settings_page(
    request: HttpRequest,
    folder: Folder,
    perms: frozenset[str],
    *,
    rename_form: Form | None = None,
    move_form: Form | None = None,
) -> HttpResponse:
    may_manage = may_manage_folder(request.user, folder)
    destinations: list[Folder] = []
    if may_manage:
        # The folder, its subfolders and where it is now are no destinations
        # (the domain refuses them too, saying why, if one is posted).
        destinations = list(
            folder_move_destinations(request.user)
            .exclude(path__startswith=folder.path)
            .exclude(pk=folder.parent_id or 0)
            .only("pk", "name", "kind", "path", "owner_id")
        )
    labels = folder_name_paths(destinations)
    rename_form = rename_form or FolderForm(
        initial={"name": folder.name, "description": folder.description}
    )
    failed = (rename_form and rename_form.errors) or (move_form and move_form.errors)
    return render(
        request,
        "portal/folder_settings.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "settings",
            "may_manage": may_manage,
            "refusal": None if may_manage else manage_folder_refusal(folder),
            "rename_form": rename_form,
            "move_form": move_form or MoveFolderForm(destinations=None),
            "destinations": sorted(
                ((d.pk, labels[d.pk]) for d in destinations), key=lambda d: d[1].casefold()
            ),
            "may_move_to_top": folder.parent_id is not None and is_tenant_admin(request.user),
            "top_level": TOP_LEVEL,
            "location": folder_name_paths([folder.parent])[folder.parent_id]
            if folder.parent_id
            else None,
        },
        status=400 if failed else 200,
    )


@require_http_methods(["GET"])
@login_required
def folder_settings(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_FOLDER_ACCESS)
    return _settings_page(request, folder, perms)


@require_POST
@login_required
def folder_rename(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_FOLDER_ACCESS)
    require_may_manage_folder(request.user, folder)
    form = FolderForm(request.POST)
    if form.is_valid():
        before = folder.name
        try:
            actions.rename_folder(
                folder,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                actor=request.user,
            )
        except ValidationError as error:
            form.add_error(None, error)
            folder.refresh_from_db()  # the header shows the folder as stored
        else:
            if before != folder.name:
                messages.success(request, f"Folder {before} renamed to {folder.name}.")
            else:
                messages.success(request, f"Folder {folder.name} saved.")
            return redirect("folder_settings", folder_id=folder.pk)
    return _settings_page(request, folder, perms, rename_form=form)


@require_POST
@login_required
def folder_move(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_FOLDER_ACCESS)
    require_may_manage_folder(request.user, folder)
    form = MoveFolderForm(request.POST, destinations=folder_move_destinations(request.user))
    if form.is_valid():
        parent = form.cleaned_data["parent"]
        require_may_move_folder_to(request.user, folder, parent)
        try:
            actions.move_folder(folder, parent=parent, actor=request.user)
        except ValidationError as error:
            form.add_error(None, error)
            folder.refresh_from_db()
        else:
            where = f"into {parent.name}" if parent else "to the top level"
            messages.success(request, f"Folder {folder.name} moved {where}.")
            return redirect("folder_settings", folder_id=folder.pk)
    return _settings_page(request, folder, perms, move_form=form)


@require_http_methods(["GET", "POST"])
@login_required
def folder_delete(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_FOLDER_ACCESS)
    require_may_manage_folder(request.user, folder)
    form = DeleteFolderForm()
    if request.method == "POST":
        form = DeleteFolderForm(request.POST)
        if form.is_valid():
            parent_id, name = folder.parent_id, folder.name
            actions.delete_folder(folder, actor=request.user)
            messages.success(request, f"Folder {name} was deleted, with everything in it.")
            if parent_id:
                return redirect("folder_subfolders", folder_id=parent_id)
            return redirect("tenant_folders")
    return render(
        request,
        "portal/folder_confirm_delete.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "settings",
            "impact": actions.folder_deletion_impact(folder),
            "form": form,
        },
        status=400 if form.errors else 200,
    )
