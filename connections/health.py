"""Health checks: the connector's health request, sent with a credential,
read in plain words.

Used when connecting (the secret is checked before anything is stored), by
"Check now" and by the background sweep.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings

from connections import egress
from connections.catalog.schema import PLACEHOLDER, AuthTypeSpec, ConnectorSpec, SendSpec

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


def _fill(template: str, values: dict[str, str], *, quote_values: bool = False) -> str:
    def value(match: re.Match) -> str:
        text = str(values.get(match.group(1), ""))
        return quote(text, safe="") if quote_values else text

    return PLACEHOLDER.sub(value, template)


def request_credentials(send: SendSpec, values: dict[str, str]) -> dict:
    """The keyword arguments that put the credential on a request."""
    if send.scheme == "bearer":
        return {"headers": {"Authorization": f"Bearer {_fill(send.value, values)}"}}
    if send.scheme == "header":
        return {"headers": {send.header: send.prefix + _fill(send.value, values)}}
    if send.scheme == "basic":
        return {"auth": (_fill(send.username, values), _fill(send.password, values))}
    return {"params": {send.param: _fill(send.value, values)}}


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


def _dig(data, path: str) -> str:
    for part in path.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return ""
    return "" if isinstance(data, dict | list) or data is None else str(data)


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
            text = str(value)
            for secret in secret_values:
                if secret and len(secret) >= 4:
                    text = text.replace(secret, "••••")
            return text[:MAX_PROVIDER_MESSAGE]
    return ""


def run_check(
    connector: ConnectorSpec, auth: AuthTypeSpec, fields: dict[str, str], secret: dict[str, str]
) -> CheckResult:
    """Send the health request with this credential and say what happened."""
    values = {**fields, **secret}
    check = connector.health_check
    url = connector.api_base(fields) + _fill(check.path, values, quote_values=True)
    host = urlsplit(url).hostname or url
    started = time.monotonic()
    try:
        response = egress.request(
            check.method,
            url,
            policy=egress_policy(connector),
            **request_credentials(auth.send, values),
        )
    except egress.EgressDenied as error:
        return CheckResult(ok=False, error=str(error), failure="unreachable")
    except egress.EgressError as error:
        return CheckResult(ok=False, error=str(error), failure="unreachable")
    latency = int((time.monotonic() - started) * 1000)
    status = response.status_code
    if status in check.success_status:
        identity = ""
        if check.identity:
            try:
                identity = _dig(response.json(), check.identity)
            except ValueError:
                identity = ""
        elif check.identity_field:
            identity = values.get(check.identity_field, "")
        return CheckResult(ok=True, status_code=status, latency_ms=latency, identity=identity)

    said = _provider_message(response, [str(v) for v in secret.values()])
    said = f' The provider said: "{said}"' if said else ""
    if status == 401:
        error, failure = (
            f"{connector.name} refused the credentials (401 Unauthorized): the "
            f"{auth.secrets[0].label.lower() if auth.secrets else 'credential'} is wrong, "
            "expired or revoked.",
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
        ok=False, error=error + said, status_code=status, latency_ms=latency, failure=failure
    )
