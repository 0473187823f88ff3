"""The audit log: tenant administrators read every record, folder
administrators those of their folders (``permissions.audit_scope``);
newest first, filtered, 50 to a page, or all the filtered records as CSV."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal import audit_log
from portal.forms import AuditFilterForm
from portal.models import Folder
from portal.permissions import Action, audit_scope, folders_where, is_tenant_admin

PAGE_SIZE = 50


def _filtered(request: HttpRequest) -> tuple[AuditFilterForm, audit_log.Filters, object]:
    scope = audit_scope(request.user)
    if scope is None:
        raise PermissionDenied("Only tenant and folder administrators may read the audit log.")
    tenant_admin = is_tenant_admin(request.user)
    folders = (
        Folder.objects.shared()
        if tenant_admin
        else folders_where(request.user, Action.MANAGE_FOLDER_ACCESS)
    )
    form = AuditFilterForm(request.GET, folders=folders)
    filters = audit_log.Filters()
    if form.is_valid():
        data = form.cleaned_data
        filters = audit_log.Filters(
            action=data["action"],
            q=data["q"],
            folder=data["folder"],
            connection_id=data["connection"],
            actor=data["actor"],
            since=data["since"],
            until=data["until"],
        )
    return form, filters, audit_log.records(scope, filters)


@require_GET
@login_required
def audit_log_page(request: HttpRequest) -> HttpResponse:
    form, filters, records = _filtered(request)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/tenant_audit.html",
        {
            "form": form,
            "page": page,
            "filters": filters,
            "filtered": filters.any,
            "query_string": query.urlencode(),
            "tenant_admin": is_tenant_admin(request.user),
            "tenant_tab": "audit",
        },
        status=400 if form.errors else 200,
    )


@require_GET
@login_required
def audit_log_csv(request: HttpRequest) -> HttpResponse:
    form, _, records = _filtered(request)
    if form.errors:
        return HttpResponseBadRequest("The filters are not valid: fix them on the audit log page.")
    name = f"audit-log-{timezone.now():%Y%m%d-%H%M%S}.csv"
    response = StreamingHttpResponse(audit_log.csv_lines(records), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
