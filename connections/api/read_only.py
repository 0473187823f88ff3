"""Read-only mode (``TenantSettings.read_only``, the reference's Public
Sector mode): the API still reads folders, connections and credentials, but
every operation that manages something (a POST, PUT, PATCH or DELETE) is
refused with 403, saying where connections are managed instead: the
portal's pages.

One guard on every operation of the API (``api.add_decorator``), so that a
new write operation is refused without anyone remembering to. Reading the
setting costs a query, on writes only. The exceptions
are named on the operation itself (``openapi_extra=WHILE_READ_ONLY``, shown
in the schema as ``x-allowed-while-read-only``): robots claiming and
finishing the jobs they run do their work, they do not manage connections.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from connections.api.auth import ApiKeyAuth
from portal.models import TenantSettings

ALLOWED = "x-allowed-while-read-only"
WHILE_READ_ONLY = {ALLOWED: True}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadOnlyMode(Exception):
    """Answered 403 in the API's error shape."""

    def __init__(self) -> None:
        super().__init__(
            "This portal is in read-only mode: connections are managed in the portal's pages, "
            f"not through the API or portal-cli. Go to {settings.PORTAL_BASE_URL}/"
        )


def manages(methods: list[str], openapi_extra: dict | None) -> bool:
    """Whether an operation (its HTTP methods and ``openapi_extra``) is
    refused in read-only mode."""
    return bool(set(methods) - SAFE_METHODS) and not (openapi_extra or {}).get(ALLOWED)


def read_only() -> bool:
    return TenantSettings.load().read_only


def refuse_while_read_only(run: Callable) -> Callable:
    """The API-wide decorator of each operation's ``run`` (ninja's "view"
    mode): before the request's data is parsed, so that a refused write is
    refused whatever it sends, but after its key is verified, so that a
    caller without a valid key learns nothing but 401."""
    operation = getattr(run, "__self__", None)  # the bound Operation.run
    if operation is None:
        # Another view decorator came first: say so rather than guess.
        raise ImproperlyConfigured(f"The read-only guard must wrap {run!r} first.")
    if not manages(operation.methods, operation.openapi_extra):
        return run

    @wraps(run)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method in SAFE_METHODS or not read_only():
            return run(request, *args, **kwargs)
        try:
            ApiKeyAuth()(request)  # 401 or 429 as on any other request
            raise ReadOnlyMode()
        except Exception as error:  # answered in the API's error shape
            return operation.api.on_exception(request, error)

    return guarded
