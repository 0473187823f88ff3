"""What django-axes counts failed logins against."""

from django.http import HttpRequest


def attempted_login(request: HttpRequest, credentials: dict | None) -> str | None:
    """The login the person typed (username or e-mail), case-folded, so
    ``Alice`` and ``alice`` share one failure count."""
    credentials = credentials or {}
    value = (
        credentials.get("username")
        or credentials.get("email")
        or (request.POST.get("login") if request is not None else None)
    )
    return value.strip().casefold() if value else None
