"""Tenant administration: governance, top-level folders, invitations, workspaces."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from portal import actions
from portal.auth.invitations import revoke_invitation, send_invitation
from portal.forms import FolderForm, GovernanceForm, InvitationForm
from portal.models import Folder, Invitation, TenantSettings, WorkerHeartbeat
from portal.permissions import listable_personal_workspaces, require_tenant_admin

PAGE_SIZE = 50


@require_http_methods(["GET", "POST"])
@login_required
def governance(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    tenant = TenantSettings.load()
    form = GovernanceForm(instance=tenant)
    if request.method == "POST":
        form = GovernanceForm(request.POST, instance=tenant)
        if form.is_valid():
            actions.set_governance(
                allow_shared_connection_creation=form.cleaned_data[
                    "allow_shared_connection_creation"
                ],
                min_polling_interval_seconds=form.cleaned_data["min_polling_interval_seconds"],
                read_only=form.cleaned_data["read_only"],
                changed_by=request.user,
            )
            messages.success(request, "Governance settings saved.")
            return redirect("tenant_governance")
    return render(
        request,
        "portal/tenant_governance.html",
        {
            "form": form,
            "tenant": tenant,
            "heartbeat": WorkerHeartbeat.objects.first(),
            "tenant_tab": "governance",
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def folders(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    form = FolderForm()
    if request.method == "POST":
        form = FolderForm(request.POST)
        if form.is_valid():
            try:
                folder = actions.create_folder(parent=None, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, f"Folder {folder.name} created.")
                return redirect("folder_connections", folder_id=folder.pk)
    top_level = Folder.objects.shared().filter(parent=None).order_by("name")
    return render(
        request,
        "portal/tenant_folders.html",
        {"form": form, "folders": top_level, "tenant_tab": "folders"},
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def invitations(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    form = InvitationForm()
    if request.method == "POST":
        form = InvitationForm(request.POST)
        if form.is_valid():
            invitation = send_invitation(email=form.cleaned_data["email"], invited_by=request.user)
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("tenant_invitations")
    page = Paginator(
        Invitation.objects.select_related("invited_by", "accepted_by"), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/tenant_invitations.html",
        {"form": form, "page": page, "tenant_tab": "invitations"},
        status=400 if form.errors else 200,
    )


@require_POST
@login_required
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    require_tenant_admin(request.user)
    invitation = get_object_or_404(Invitation.objects.pending(), pk=invitation_id)
    revoke_invitation(invitation, actor=request.user)
    messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("tenant_invitations")


@require_http_methods(["GET"])
@login_required
def workspaces(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    queryset = listable_personal_workspaces(request.user)
    query = request.GET.get("q", "").strip()
    if query:
        queryset = queryset.filter(name__icontains=query) | queryset.filter(
            owner__username__icontains=query
        )
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/tenant_workspaces.html",
        {"page": page, "query": query, "tenant_tab": "workspaces"},
    )
