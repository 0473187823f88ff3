from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.views.decorators.http import require_GET


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Pages that link no icon themselves (the admin's) ask for /favicon.ico."""
    return redirect(static("portal/logo.svg"), permanent=True)
