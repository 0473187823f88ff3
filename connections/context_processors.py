from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from connections.models import Connection, ConnectionState

BANNER_LIMIT = 5


def sandbox(request: HttpRequest) -> dict:
    return {"sandbox_enabled": settings.PORTAL_SANDBOX_ENABLED}


def needs_reconnect(request: HttpRequest) -> dict:
    """The banner: connections the signed-in user authenticated that need
    reconnecting, of those they may still see (one query, only on pages
    that show the banner)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def mine():
        return list(
            Connection.objects.visible_to(user)
            .filter(authenticated_by=user, is_enabled=True, state=ConnectionState.NEEDS_RECONNECT)
            .only("pk", "name", "folder_id")
            .order_by("name")[: BANNER_LIMIT + 1]
        )

    return {"reconnect_needed": SimpleLazyObject(mine)}
