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
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.PORTAL_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part]
    if len(forwarded) < proxies:
        # The chain is shorter than the proxies we were told of: misconfigured
        # or bypassed. Fall back to the TCP peer rather than trust the header.
        return remote
    return _valid_ip(forwarded[-proxies]) or remote
