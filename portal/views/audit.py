"""The audit log, for tenant administrators: newest first, filtered by action
and by the names it copied (who, which key, what), 50 to a page."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.forms import AuditFilterForm
from portal.models import AuditRecord
from portal.permissions import require_tenant_admin

PAGE_SIZE = 50


@require_GET
@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    require_tenant_admin(request.user)
    form = AuditFilterForm(request.GET)
    records = AuditRecord.objects.select_related("folder")
    action = query = ""
    if form.is_valid():
        action, query = form.cleaned_data["action"], form.cleaned_data["q"]
    if action:
        records = records.filter(action=action)
    if query:
        records = records.filter(
            Q(actor_name__icontains=query)
            | Q(api_key_name__icontains=query)
            | Q(target_name__icontains=query)
            | Q(job_id__icontains=query)
        )
    page = Paginator(records.order_by("-created_at", "-pk"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "portal/tenant_audit.html",
        {
            "form": form,
            "page": page,
            "action_filter": action,
            "query": query,
            "filtered": bool(action or query),
            "actions": AuditRecord.Action.choices,
            "tenant_tab": "audit",
        },
    )
