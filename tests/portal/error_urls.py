"""The portal's URLs plus views that fail, for tests/portal/test_error_pages.py."""

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns


class ExplodedError(RuntimeError):
    pass


def explode(request):
    raise ExplodedError("internal detail the page must not show")


def refuse(request):
    raise PermissionDenied("You do not have Connections - Delete in this folder.")


def refuse_plainly(request):
    raise PermissionDenied


def bad_request(request):
    raise SuspiciousOperation("internal detail of a bad request")


urlpatterns = [
    path("test-errors/explode/", explode),
    path("test-errors/refuse/", refuse),
    path("test-errors/refuse-plainly/", refuse_plainly),
    path("test-errors/bad-request/", bad_request),
    *portal_urlpatterns,
]
