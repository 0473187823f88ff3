"""Help pages: the troubleshooting guide from docs/, inside the portal."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from connections import troubleshooting


@require_GET
@login_required
def troubleshooting_guide(request: HttpRequest) -> HttpResponse:
    return render(
        request, "connections/help_troubleshooting.html", {"guide": troubleshooting.guide()}
    )
