"""The add-connection wizard."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.permissions import Action, get_folder_or_404, require


@require_GET
@login_required
def choose_connector(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder = get_folder_or_404(request.user, folder_id)
    perms = require(request.user, Action.CREATE_CONNECTIONS, folder)
    return render(
        request,
        "connections/wizard_choose_connector.html",
        {"folder": folder, "perms_here": perms, "tab": "connections", "connectors": []},
    )
