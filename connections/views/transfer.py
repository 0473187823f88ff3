"""The Transfer tab of the tenant settings: Download the connection
definitions, Upload a file, see its plan, Confirm import. Tenant
administrators only. The uploaded document waits in the session between
the plan and Confirm import (size-limited); the confirmation names it by
digest, so what is imported is what the plan showed."""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from connections.transfer.export import export_connections
from connections.transfer.format import DocumentRefused, parse
from connections.transfer.forms import ExportForm, UploadForm
from connections.transfer.import_ import ImportRefused, import_connections, plan_import
from portal.folder_tree import folder_name_paths
from portal.models import Folder
from portal.permissions import require_tenant_admin

PENDING = "transfer_pending"


def _page(request: HttpRequest, *, export_form=None, upload_form=None, refused=(), status=200):
    return render(
        request,
        "connections/transfer.html",
        {
            "tenant_tab": "transfer",
            "export_form": export_form or ExportForm(),
            "upload_form": upload_form or UploadForm(),
            "refused": refused,
        },
        status=status,
    )


@require_GET
@login_required
def transfer(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    return _page(request)


@require_POST
@login_required
def transfer_export(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _page(request, export_form=form, status=400)
    text = export_connections(folder=form.chosen_folder("folder"), actor=request.user)
    response = HttpResponse(text, content_type="application/json")
    name = f"connections-{timezone.now():%Y%m%d-%H%M%S}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_POST
@login_required
def transfer_upload(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, upload_form=form, status=400)
    raw = form.cleaned_data["document"]
    try:
        parse(raw)
    except DocumentRefused as error:
        return _page(request, upload_form=form, refused=error.problems, status=400)
    under = form.chosen_folder("under")
    request.session[PENDING] = {
        "document": raw.decode("utf-8"),
        "digest": hashlib.sha256(raw).hexdigest(),
        "under": under.pk if under else None,
        "name": form.files["document"].name[:200],
    }
    return redirect("tenant_transfer_plan")


def _pending(request: HttpRequest):
    """The uploaded document waiting in the session: (pending, document,
    folder to import under), or None when there is none (or its folder went)."""
    pending = request.session.get(PENDING)
    if not pending:
        return None
    under = None
    if pending["under"] is not None:
        under = Folder.objects.shared().filter(pk=pending["under"]).first()
        if under is None:
            return None
    return pending, parse(pending["document"]), under


def _plan_page(request: HttpRequest, pending: dict, plan, under, status: int = 200):
    return render(
        request,
        "connections/transfer_plan.html",
        {
            "tenant_tab": "transfer",
            "plan": plan,
            "pending": pending,
            "under_path": folder_name_paths([under])[under.pk] if under else "",
        },
        status=status,
    )


@require_GET
@login_required
def transfer_plan(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    found = _pending(request)
    if found is None:
        messages.info(request, "There is no uploaded file waiting: upload one first.")
        return redirect("tenant_transfer")
    pending, document, under = found
    return _plan_page(request, pending, plan_import(document, under=under), under)


@never_cache  # the answer may hold new webhook signing secrets, shown once
@require_POST
@login_required
def transfer_confirm(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    found = _pending(request)
    if request.POST.get("cancel") or found is None:
        request.session.pop(PENDING, None)
        messages.info(request, "Nothing was imported.")
        return redirect("tenant_transfer")
    pending, document, under = found
    if request.POST.get("digest") != pending["digest"]:
        messages.error(request, "Another file was uploaded since this plan: check its plan.")
        return redirect("tenant_transfer_plan")
    try:
        imported = import_connections(document, under=under, actor=request.user)
    except ImportRefused as error:
        return _plan_page(request, pending, error.plan, under, status=400)
    request.session.pop(PENDING, None)
    paths = folder_name_paths([c.folder for c in imported.to_authenticate])
    for connection in imported.to_authenticate:
        connection.folder_path = paths[connection.folder_id]
    return render(
        request,
        "connections/transfer_done.html",
        {"tenant_tab": "transfer", "imported": imported},
    )
