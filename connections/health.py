"""Health checks: the connector's health request, sent with a credential,
read in plain words.

Used when connecting (the secret is checked before anything is stored), by
"Check now" and by the background sweep.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from connections import egress, rate_limits
from connections.catalog import get_catalog
from connections.catalog.schema import AuthTypeSpec, ConnectorSpec
from connections.models import Connection, ConnectionState
from portal.models import MAX_POLLING_INTERVAL_SECONDS, MIN_POLLING_INTERVAL_SECONDS, TenantSettings

# Answer headers in which a provider says when the credential expires
# (GitHub: "github-authentication-token-expiration: 2026-01-31 12:00:00 UTC").
SECRET_EXPIRY_HEADERS = ("github-authentication-token-expiration",)
PROVIDER_MESSAGE_KEYS = ("error_description", "error", "message", "errorMessages", "detail")
MAX_PROVIDER_MESSAGE = 200


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    error: str = ""
    status_code: int | None = None
    latency_ms: int | None = None
    identity: str = ""
    # What kind of failure: decides the connection's state.
    failure: str = ""  # "", "rejected", "forbidden", "not_found", "unreachable", "provider"
    # When the provider says the credential (a PAT) expires.
    secret_expires_at: datetime | None = None
    # A rate limit (429 or 503) with Retry-After: no check before this many seconds.
    retry_after: int | None = None


def parse_expiry(value: str) -> datetime | None:
    """A date or time as providers write expiries, in UTC; None when unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    for candidate in (text, text.replace(" ", "T", 1)):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    for pattern in ("%Y-%m-%d %H:%M:%S %z", "%a, %d %b %Y %H:%M:%S %Z"):
        try:
            moment = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return None


def _secret_expiry(response) -> datetime | None:
    for header in SECRET_EXPIRY_HEADERS:
        if response.headers.get(header):
            return parse_expiry(response.headers[header])
    return None


def egress_policy(connector: ConnectorSpec) -> egress.EgressPolicy:
    networks: tuple[str, ...] = ()
    if connector.sandbox:
        # The documented exception: the Sandbox talks to this portal itself,
        # which may well sit on a loopback or private address.
        host = urlsplit(settings.PORTAL_BASE_URL).hostname or "localhost"
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            infos = []
        networks = tuple(sorted({info[4][0] for info in infos}))
    hosts = connector.request_hosts()
    if "*" in hosts:
        # Any public host (the generic connector): the address check still applies.
        hosts = ()
    return egress.EgressPolicy(allowed_hosts=hosts, allowed_networks=networks)


def _provider_message(response, secret_values: list[str]) -> str:
    """Only the provider's error code/description, shortened, secrets masked."""
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    for key in PROVIDER_MESSAGE_KEYS:
        value = data.get(key)
        if isinstance(value, list):
            value = " ".join(str(item) for item in value)
        if isinstance(value, dict):
            value = value.get("message") or value.get("title") or ""
        if value:
            return mask_secrets(str(value), secret_values)[:MAX_PROVIDER_MESSAGE]
    return ""


def mask_secrets(text: str, secret_values) -> str:
    """``text`` (a provider's words) with every secret we sent it replaced:
    providers sometimes echo what they refused."""
    for secret in sorted((str(v) for v in secret_values if v), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "••••")
    return text


def _in_sentence(label: str) -> str:
    """ "Personal access token" -> "personal access token"; "API key" stays."""
    return label if label[:2].isupper() else label[:1].lower() + label[1:]


def credential_transport(
    auth: AuthTypeSpec, fields: dict[str, str], secret: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query parameters) that carry the credential on a request to
    the provider: the auth type's sending rule for a PAT, API key or basic
    credential, the bearer access token for OAuth 2.0."""
    if auth.send is not None:
        return auth.send.apply({**fields, **secret})
    if secret.get("access_token"):
        return {"Authorization": f"Bearer {secret['access_token']}"}, {}
    return {}, {}


def run_check(
    connector: ConnectorSpec,
    auth: AuthTypeSpec,
    fields: dict[str, str],
    secret: dict[str, str],
    *,
    session: egress.EgressSession | None = None,
) -> CheckResult:
    """Send the health request with this credential and say what happened
    (through ``session`` when a batch of checks shares one)."""
    values = {**fields, **secret}
    check = connector.health_check_for(auth.type)
    url = connector.health_check_url(fields, auth.type)
    host = urlsplit(url).hostname or url
    credential_headers, params = credential_transport(auth, fields, secret)
    headers = {**connector.headers, **credential_headers}
    started = time.monotonic()
    try:
        if session is None:
            response = egress.request(
                check.method, url, policy=egress_policy(connector), headers=headers, params=params
            )
        else:
            response = session.request(check.method, url, headers=headers, params=params)
    except (egress.EgressDenied, egress.EgressError) as error:
        return CheckResult(ok=False, error=str(error), failure="unreachable")
    latency = int((time.monotonic() - started) * 1000)
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if check.is_success(status, answer):
        return CheckResult(
            ok=True,
            status_code=status,
            latency_ms=latency,
            identity=check.read_identity(answer, values)[:255],
            secret_expires_at=_secret_expiry(response),
        )

    said = _provider_message(response, [str(v) for v in secret.values()])
    said = f' The provider said: "{said}"' if said else ""
    secret_label = _in_sentence(auth.secrets[0].label) if auth.secrets else "credential"
    reason = f"{status} {response.reason}" if response.reason else str(status)
    if status == 401 or (status in check.success_status and check.expect):
        # Slack-style providers answer 200 {"ok": false} to a revoked token.
        error, failure = (
            f"{connector.name} refused the credentials ({reason}): the {secret_label} "
            "is wrong, expired or revoked.",
            "rejected",
        )
    elif status == 403:
        error, failure = (
            f"{connector.name} accepted the credentials but they lack permission for this "
            "check (403 Forbidden): grant the missing scope or role.",
            "forbidden",
        )
    elif status == 404:
        error, failure = (
            f"{host} answered 404 Not Found: check the address or instance name.",
            "not_found",
        )
    elif status == 429:
        error, failure = (
            f"{connector.name} is rate limiting requests (429): try again later.",
            "provider",
        )
    else:
        error, failure = (
            f"{connector.name} answered {status} {response.reason or ''}".strip() + ".",
            "provider",
        )
    return CheckResult(
        ok=False,
        error=error + said,
        status_code=status,
        latency_ms=latency,
        failure=failure,
        retry_after=rate_limits.limited_for(status, response.headers),
    )


# --- The state machine the checks drive -------------------------------------

# The absolute bounds; the tenant-wide minimum (TenantSettings) may raise the lower one.
MIN_POLLING_SECONDS = MIN_POLLING_INTERVAL_SECONDS
MAX_POLLING_SECONDS = MAX_POLLING_INTERVAL_SECONDS


def tenant_min_polling_seconds() -> int:
    return max(MIN_POLLING_SECONDS, TenantSettings.load().min_polling_interval_seconds)


# What a failed check says about the connection. Transient failures (the
# provider unreachable, 5xx, 429) turn a connection Degraded only after
# PORTAL_HEALTH_DEGRADED_AFTER of them in a row; the others change the state
# at once: the credential was refused (Needs reconnect) or the connection is
# set up wrong (Misconfigured: 403, 404, missing scopes, no refresh token).
FAILURE_STATES = {
    "rejected": ConnectionState.NEEDS_RECONNECT,
    "forbidden": ConnectionState.MISCONFIGURED,
    "not_found": ConnectionState.MISCONFIGURED,
    "misconfigured": ConnectionState.MISCONFIGURED,
    "unreachable": ConnectionState.DEGRADED,
    "provider": ConnectionState.DEGRADED,
}
TRANSIENT_STATUS = {408, 425, 429}
BROKEN_STATES = {ConnectionState.NEEDS_RECONNECT, ConnectionState.MISCONFIGURED}

# Connection fields that may say when a PAT or client secret expires (a
# connector declares one of them as a field, e.g. for a client secret).
SECRET_EXPIRY_FIELDS = ("secret_expires_on", "secret_expires_at")
SECRET_EXPIRY_WARNING_ENDS = ("replace it before then.", "replace it now.")


def effective_polling_interval(connection: Connection, minimum: int | None = None) -> int:
    """The connection's interval, never below the tenant-wide minimum (which
    may have been raised after the interval was chosen)."""
    minimum = tenant_min_polling_seconds() if minimum is None else minimum
    return max(connection.polling_interval_seconds, minimum)


def schedule_next_check(connection: Connection, *, minimum: int | None = None) -> None:
    """next_check_at = last check + polling interval; None while the
    connection is disabled or not yet connected (never checked by the sweep)."""
    if not connection.is_enabled or connection.state == ConnectionState.NOT_CONNECTED:
        connection.next_check_at = None
        return
    last = connection.last_checked_at or timezone.now()
    connection.next_check_at = last + timedelta(
        seconds=effective_polling_interval(connection, minimum)
    )


def is_transient(result: CheckResult) -> bool:
    if result.failure == "unreachable":
        return True
    if result.failure == "provider":
        code = result.status_code
        return code is None or code >= 500 or code in TRANSIENT_STATUS
    return False


def failure_state(result: CheckResult) -> str:
    if is_transient(result):
        return ConnectionState.DEGRADED
    # Any other refusal of the health request (400, 405, 410, 422...): the
    # request the connection makes is wrong, which retrying will not fix.
    return FAILURE_STATES.get(result.failure, ConnectionState.MISCONFIGURED)


def apply_result(
    connection: Connection,
    result: CheckResult,
    *,
    minimum: int | None = None,
    now: datetime | None = None,
) -> None:
    """The health state machine, on the connection in memory (callers save).

    Success: Connected, failures reset. Credentials refused: Needs reconnect.
    403 / 404 / missing scopes / no refresh token: Misconfigured. Transient
    failures count, and turn a connection Degraded only after
    PORTAL_HEALTH_DEGRADED_AFTER in a row (one timeout does not flip a healthy
    connection); they never hide a Needs reconnect or Misconfigured state."""
    now = now or timezone.now()
    connection.last_checked_at = now
    if result.ok:
        connection.state = ConnectionState.CONNECTED
        connection.last_success_at = now
        connection.consecutive_failures = 0
        connection.last_error = ""
        if result.identity:
            connection.account_identity = result.identity
        if result.secret_expires_at:
            connection.secret_expires_at = result.secret_expires_at
    else:
        connection.consecutive_failures += 1
        connection.last_error = result.error[:500]
        if not is_transient(result):
            connection.state = failure_state(result)
        elif connection.state in BROKEN_STATES or connection.state == ConnectionState.NOT_CONNECTED:
            pass  # still broken (or never connected): a timeout says nothing new
        elif connection.consecutive_failures >= settings.PORTAL_HEALTH_DEGRADED_AFTER:
            connection.state = ConnectionState.DEGRADED
    update_expiry_warning(connection)
    schedule_next_check(connection, minimum=minimum)
    if result.retry_after and connection.next_check_at is not None:
        # The provider's Retry-After: not before then, whatever the interval.
        connection.next_check_at = max(
            connection.next_check_at, now + timedelta(seconds=result.retry_after)
        )


def _field_expiry(connection: Connection) -> datetime | None:
    for key in SECRET_EXPIRY_FIELDS:
        value = (connection.fields or {}).get(key)
        if value:
            return parse_expiry(str(value))
    return None


def _secret_label(connection: Connection) -> str:
    connector = get_catalog().get(connection.connector_key)
    auth = connector.auth_type(connection.auth_type) if connector else None
    if auth and auth.secrets:
        return auth.secrets[0].label
    if connection.own_app:
        return "Client secret"
    return "Secret"


def update_expiry_warning(connection: Connection) -> None:
    """Warn ahead of a known PAT or client secret expiry; clear our own
    warning (never another one) when it no longer applies."""
    expires = _field_expiry(connection) or connection.secret_expires_at
    connection.secret_expires_at = expires
    ours = connection.warning.endswith(SECRET_EXPIRY_WARNING_ENDS)
    lead = timedelta(days=settings.PORTAL_SECRET_EXPIRY_WARNING_DAYS)
    now = timezone.now()
    if expires is None or expires - now > lead:
        if ours:
            connection.warning = ""
        return
    if connection.warning and not ours:
        return  # a standing warning of another kind stays
    label = _secret_label(connection)
    day = expires.astimezone(UTC).strftime("%Y-%m-%d")
    if expires <= now:
        connection.warning = f"{label} expired on {day} UTC: replace it now."
        return
    days = (expires - now).days
    when = "today" if days == 0 else f"in {days} day" + ("s" if days != 1 else "")
    connection.warning = f"{label} expires on {day} UTC ({when}): replace it before then."
