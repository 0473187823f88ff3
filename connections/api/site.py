"""The runtime API, ``/api/v1/``: its authentication, its error answers and
its routers. Every error is JSON with a ``detail`` in plain words (and
``errors`` by field when data was refused)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as RequestInvalid
from ninja.openapi.schema import OpenAPISchema

from connections import oauth, refresh, vault
from connections.actions import check
from connections.api.account import router as account_router
from connections.api.auth import ApiKeyAuth, RateLimited
from connections.api.connections import router as connections_router
from connections.api.credentials import router as credentials_router
from connections.api.folders import router as folders_router
from connections.api.jobs import router as jobs_router
from connections.api.processes import router as processes_router
from connections.api.read_only import ReadOnlyMode, manages, refuse_while_read_only
from connections.api.schemas import Conflict
from connections.api.triggers import router as triggers_router
from connections.catalog import ConnectorMissing
from connections.catalog.schema import CredentialNotSendable
from connections.runtime import Unresolved
from connections.triggers import configure, jobs
from connections.unreadable import CredentialUnreadable
from portal.api_keys import ApiKeyRefused
from solutions.api import router as solutions_router
from solutions.deploy_api import router as deployments_router

log = logging.getLogger(__name__)

# What each error status means, in the schema; 429 and 503 carry Retry-After.
STATUS_MEANINGS = {
    400: "The request body is not JSON, or the connection is not named enough to be found.",
    401: "No API key, or an unknown, revoked or expired one.",
    403: "The folder is visible but the action is not allowed.",
    404: "No such folder, connection, process, trigger, job, solution, version or deployment "
    "(or not visible, or out of the key's scope).",
    409: "It cannot be done as things are: the connection is disabled, needs reconnecting, has "
    "several candidates and no default, or its stored credential cannot be read; it lacks "
    "scopes a trigger's event needs; the trigger is disabled or paused; the process has no "
    "job queue; the lease token does not hold the job; the delivery has not failed; the "
    "deployment is running, or was removed.",
    422: "Invalid data, or the provider refused the credential.",
    429: "Too many requests: the user's rate limit, or too many refused keys from the "
    "client's address.",
    503: "Try again later: a due token refresh failed for a transient reason, or the "
    "portal cannot open stored secrets now.",
}
# What 403 adds on the operations refused in read-only mode (read_only.manages).
READ_ONLY_403 = (
    " Also, whatever the permissions, while the portal is in read-only mode: connections are "
    "managed in the portal's pages then."
)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


class PortalApi(NinjaAPI):
    def get_openapi_schema(self, **kwargs) -> OpenAPISchema:
        """Ninja's schema, with what each error status means and the
        Retry-After header of 429 and 503."""
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema["paths"].values():
            for method, operation in operations.items():
                refused_while_read_only = manages([method.upper()], operation)
                for status, answer in operation.get("responses", {}).items():
                    if int(status) in STATUS_MEANINGS:
                        answer["description"] = STATUS_MEANINGS[int(status)]
                    if int(status) == 403 and refused_while_read_only:
                        answer["description"] += READ_ONLY_403
                    if int(status) in (429, 503):
                        answer["headers"] = RETRY_AFTER
        return schema


api = PortalApi(
    title="Connections portal API",
    version="1",
    description=(
        "Find connections and get working credentials at run time; manage connections that "
        "need no browser consent. Authenticate with an API key: `Authorization: Bearer cpk_…`."
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api-v1",
    docs_url="/docs",
)


def _error(request: HttpRequest, status: int, detail: str, **extra) -> HttpResponse:
    body = {"detail": detail, **extra}
    return api.create_response(request, body, status=status)


@api.exception_handler(ApiKeyRefused)
@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, error: Exception) -> HttpResponse:
    detail = str(error) if isinstance(error, ApiKeyRefused) else ""
    response = _error(request, 401, detail or "Send an API key: Authorization: Bearer cpk_…")
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, error: RateLimited) -> HttpResponse:
    response = _error(request, 429, str(error))
    response["Retry-After"] = str(error.retry_after)
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, error: Http404) -> HttpResponse:
    return _error(request, 404, str(error) or "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, error: PermissionDenied) -> HttpResponse:
    return _error(request, 403, str(error) or "You may not do this.")


@api.exception_handler(ReadOnlyMode)
def _read_only(request: HttpRequest, error: ReadOnlyMode) -> HttpResponse:
    return _error(request, 403, str(error))


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, error: ValidationError) -> HttpResponse:
    if hasattr(error, "error_dict"):
        errors = {field: messages for field, messages in error.message_dict.items()}
        first = next(iter(errors.values()))[0]
        return _error(request, 422, first, errors=errors)
    return _error(request, 422, " ".join(error.messages))


@api.exception_handler(RequestInvalid)
def _malformed(request: HttpRequest, error: RequestInvalid) -> HttpResponse:
    """A parameter or body field of the wrong shape: the same Error answer as
    every other refusal (ninja's own puts a list in ``detail``). Each message
    is filed under the innermost printable name of where it was found (a
    field, or a key of ``fields`` or ``secret``)."""
    errors: dict[str, list[str]] = {}
    for problem in error.errors:
        where = [str(part) for part in problem.get("loc", ())]
        names = [
            part for part in where[1:] if part != "[key]" and part.isprintable() and part.strip()
        ]
        message = str(problem.get("msg", "Not valid")).removeprefix("Value error, ")
        errors.setdefault(names[-1] if names else "request", []).append(message)
    field, messages = next(iter(errors.items()), ("request", ["Not valid"]))
    return _error(request, 422, f"{field}: {messages[0]}.", errors=errors)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    """Ninja's own refusals (a body that is not JSON: 400) in the Error shape."""
    return _error(request, error.status_code, str(error) or "Bad request.")


@api.exception_handler(CredentialNotSendable)
def _not_sendable(request: HttpRequest, error: CredentialNotSendable) -> HttpResponse:
    # Stored before secrets were checked for line breaks: replace it.
    return _error(
        request,
        409,
        "The stored credential cannot be sent in a request header (it holds a line break): "
        "replace it.",
    )


@api.exception_handler(Unresolved)
def _unresolved(request: HttpRequest, error: Unresolved) -> HttpResponse:
    return _error(request, error.status, str(error))


@api.exception_handler(Conflict)
@api.exception_handler(configure.MissingScopes)
@api.exception_handler(jobs.NoJobQueue)
@api.exception_handler(jobs.LeaseLost)
def _conflict(request: HttpRequest, error: Exception) -> HttpResponse:
    if isinstance(error, configure.MissingScopes):
        return _error(request, 409, error.messages[0], errors={"event": error.messages})
    return _error(request, 409, str(error))


@api.exception_handler(check.ConnectError)
@api.exception_handler(ConnectorMissing)
@api.exception_handler(oauth.OAuthFlowError)
def _provider_refused(request: HttpRequest, error: Exception) -> HttpResponse:
    return _error(request, 422, str(error))


@api.exception_handler(refresh.RefreshError)
def _refresh_failed(request: HttpRequest, error: refresh.RefreshError) -> HttpResponse:
    if error.transient:
        response = _error(
            request, 503, f"The access token could not be refreshed now; try again. {error}"
        )
        response["Retry-After"] = str(max(1, error.retry_after or 5))
        return response
    return _error(request, 409, f"The access token could not be refreshed: {error}")


@api.exception_handler(CredentialUnreadable)
def _unreadable(request: HttpRequest, error: CredentialUnreadable) -> HttpResponse:
    # The connection is marked Misconfigured and the failure logged already.
    return _error(request, 409, str(error))


@api.exception_handler(vault.VaultError)
def _sealed_value_unreadable(request: HttpRequest, error: vault.VaultError) -> HttpResponse:
    """A sealed value opened where no connection's outcome applies
    (``connections.unreadable`` handles a connection's credential): still
    JSON, and fail closed. The vault's words go to the log, not the caller."""
    log.error("%s %s: a sealed value cannot be opened: %s", request.method, request.path, error)
    if isinstance(error, vault.VaultKeyError):
        return _error(
            request, 503, "The portal cannot open stored secrets now: its keys are not usable."
        )
    return _error(
        request,
        409,
        "A stored secret cannot be read: re-enter it, or ask an operator to restore the "
        "encryption key it was sealed with.",
    )


api.add_decorator(refuse_while_read_only, mode="view")

for router, tag in (
    (account_router, "Account"),
    (credentials_router, "Run time"),
    (folders_router, "Folders"),
    (connections_router, "Connections"),
    (processes_router, "Processes"),
    (triggers_router, "Triggers"),
    (jobs_router, "Jobs"),
    (solutions_router, "Solutions"),
    (deployments_router, "Deployments"),
):
    api.add_router("/", router, tags=[tag])


@csrf_exempt
def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/v1/, any method: JSON like every API answer,
    not a page (and no CSRF page: the API never uses a session)."""
    shown = rest if rest.isprintable() else rest.encode("unicode_escape").decode("ascii")
    return JsonResponse({"detail": f"No endpoint /api/v1/{shown}; see /api/v1/docs."}, status=404)
