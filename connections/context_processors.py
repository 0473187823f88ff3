from django.conf import settings
from django.http import HttpRequest


def sandbox(request: HttpRequest) -> dict:
    return {"sandbox_enabled": settings.PORTAL_SANDBOX_ENABLED}
