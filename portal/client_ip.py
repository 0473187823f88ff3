"""Who the client is, given how many trusted proxies stand in front of us.

With no trusted proxy, X-Forwarded-For is ignored: anyone can send it. With N
trusted proxies, each appends the address it received the request from, so
the client is the Nth address from the right; whatever stands left of it was
written by the client and is not trusted.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _valid_ip(value: str) -> str | None:
    """The address in one X-Forwarded-For entry, normalised, or None.

    Some proxies (Azure Application Gateway, for one) append the client's port:
    ``203.0.113.7:51234`` or ``[2001:db8::1]:443``. The port is dropped so one
    client keeps one identity whatever port it comes from.
    """
    value = value.strip()
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        value = host
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
        if not port.isdigit():
            return None
        value = host
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.PORTAL_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if len(forwarded) < proxies:
        # The chain is shorter than the proxies we were told of: misconfigured
        # or bypassed. Fall back to the TCP peer rather than trust the header.
        return remote
    # An entry our own proxy wrote that is not an address means the proxy is
    # misconfigured; the TCP peer is the only identity left that the client
    # cannot choose.
    return _valid_ip(forwarded[-proxies]) or remote
