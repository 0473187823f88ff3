"""The one outbound HTTP client of the portal (design rule 8).

Every call the portal makes to the outside (token and refresh calls, identity
lookups, health checks, trigger polls, webhooks) goes through this module. It
is built on ``requests`` so that Authlib's requests-based ``OAuth2Session`` can
use the same transport (see :class:`EgressSessionMixin`).

What it guarantees, for every request and every redirect hop:

* **URL policy** (:func:`check_url`): ``https`` only (plain ``http`` only to an
  address the operator or the call explicitly allows, such as the Sandbox
  connector's own loopback address), no user name or password in the URL, and
  a host that matches one of the policy's patterns (``api.github.com`` or
  ``*.atlassian.net``; no patterns means any public host).
* **Address guard at connect time**: the urllib3 connection classes used by
  :class:`EgressAdapter` resolve the host themselves, refuse the whole name if
  any resolved address is loopback, link-local, private, carrier-grade NAT,
  unspecified, multicast, reserved, a cloud metadata address or an IPv6 form
  of one of those (unless an allowed network, the operator's
  ``PORTAL_EGRESS_ALLOWED_NETWORKS`` or the policy's, opens it on the port
  called: :func:`parse_allowed_networks`), and then connect to one of the
  validated addresses (and check the socket's peer address again). The
  address checked is the address connected to, so there is no DNS-rebinding
  gap. TLS keeps the host name for SNI and certificate verification.
* **Redirects** are followed by this module, never by requests: at most
  ``max_redirects`` hops, each hop checked again, and on a hop to another
  origin every credential is dropped (``Authorization``, cookies, ``auth``,
  API-key headers: only a short list of harmless headers is kept).
* **Timeouts and limits** are always set: ``PORTAL_HTTP_CONNECT_TIMEOUT`` and
  ``PORTAL_HTTP_READ_TIMEOUT`` per connect and per read, and a total deadline
  per call, redirects included (``PORTAL_HTTP_TOTAL_TIMEOUT``): a watchdog
  shuts the call's socket down when it passes, so an answer trickled one
  byte at a time cannot hold a worker. The client reads the body itself
  (unless the caller asks to ``stream``) and stops at
  ``PORTAL_HTTP_MAX_RESPONSE_BYTES``, decoded. An answer whose head is cut
  off, or that carries more bytes than its ``Content-Length``, is refused.
* Proxies and ``.netrc`` from the environment are ignored, certificate
  verification cannot be turned off, and every request carries
  ``User-Agent: ConnectionsPortal/<version>``.
* **Errors in plain words**: :class:`EgressDenied` for a refusal,
  :class:`EgressError` (with a ``reason`` code) for every network failure.
  Their messages name the host only, never the path, query string or
  credentials.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import http.client
import ipaddress
import re
import socket
import ssl
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import urljoin

import idna
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, merge_cookies
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import rewind_body
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    InvalidChunkLength,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import IncompleteRead as BodyCutOff
from urllib3.util import parse_url
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

__all__ = [
    "AllowedNetwork",
    "EgressAdapter",
    "EgressDenied",
    "EgressError",
    "EgressPolicy",
    "EgressSession",
    "EgressSessionMixin",
    "check_address",
    "check_url",
    "parse_allowed_networks",
    "request",
    "session",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressDenied(Exception):
    """The portal refuses to make this call; the message is for users."""


class EgressError(Exception):
    """The call was allowed but the network failed; the message is for users.

    ``host`` is the host that could not be reached and ``reason`` a short
    code: ``dns`` (the name does not resolve), ``refused``, ``connect-timeout``,
    ``read-timeout`` (nothing arrived for the read timeout), ``tls``,
    ``reset`` (the peer reset the connection), ``closed`` (it closed the
    connection before its answer was complete), ``protocol`` (the answer is
    not valid HTTP, could not be decoded, or is longer than it announced),
    ``too-large`` (longer than ``PORTAL_HTTP_MAX_RESPONSE_BYTES``),
    ``deadline`` (not complete within ``PORTAL_HTTP_TOTAL_TIMEOUT``) or
    ``connection`` (any other network failure). The original exception is
    deliberately not chained: its text can contain the URL's path and query
    string.
    """

    def __init__(self, message: str, *, host: str = "", reason: str = "connection"):
        super().__init__(message)
        self.host = host
        self.reason = reason


# --- Policy -----------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _normalise_host(host: str) -> str:
    """Lower-case, IDNA (A-label) form of a host name or canonical IP text.

    Raises ``ValueError`` when the host is not a valid name or address.
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.rstrip(".").lower()
    if not host:
        raise ValueError("empty host")
    literal = _ip_literal(host)
    if literal is not None:
        return str(literal)
    if host.isascii():
        ascii_host = host
    else:
        # The same mapping requests applies to the URL it sends (UTS 46).
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a valid host name: {exc}") from None
    labels = ascii_host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError("not a valid host name")
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]*", labels[-1]):
        # Numeric top-level labels are never host names; inet_aton refused it.
        raise ValueError("not a valid host name or address")
    return ascii_host


_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def _ip_literal(host: str) -> Address | None:
    """The address a host string denotes by itself, without DNS.

    Besides the canonical forms this recognises what the C library's
    ``inet_aton`` accepts (``2130706433``, ``0x7f.1``, ``017700000001``,
    ``127.1``), because that is what ``getaddrinfo`` would connect to.
    """
    host = host.split("%", 1)[0]  # IPv6 zone id
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return address
    labels = host.split(".")
    if len(labels) <= 4 and all(_NUMERIC_LABEL.match(label) for label in labels):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Where one call (or one connector's calls) may go.

    ``allowed_hosts``: host patterns, exact (``api.github.com``) or a wildcard
    for any subdomain (``*.atlassian.net`` matches ``acme.atlassian.net`` and
    ``a.b.atlassian.net``, not ``atlassian.net`` nor ``evilatlassian.net``).
    Matching is case-insensitive and on the IDNA form, trailing dot ignored.
    An empty tuple allows any public host.

    ``allowed_networks``: networks this call may reach although they are not
    public (for example the Sandbox connector's own ``127.0.0.1/32``), in the
    syntax of :func:`parse_allowed_networks` (so optionally on some ports
    only); the operator's ``PORTAL_EGRESS_ALLOWED_NETWORKS`` add to them.
    Plain ``http`` is allowed only to addresses (and ports) inside one of
    these networks.

    ``max_redirects``: how many redirects to follow; ``None`` means the
    ``PORTAL_HTTP_MAX_REDIRECTS`` setting.
    """

    allowed_hosts: tuple[str, ...]
    allowed_networks: tuple[str, ...] = ()
    max_redirects: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str) or isinstance(self.allowed_networks, str):
            raise TypeError("allowed_hosts and allowed_networks are tuples of strings")
        patterns = tuple(_normalise_pattern(p) for p in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", patterns)
        object.__setattr__(self, "allowed_networks", tuple(self.allowed_networks))
        _parse_networks(self.allowed_networks, source="EgressPolicy.allowed_networks")
        if self.max_redirects is not None and self.max_redirects < 0:
            raise ValueError("max_redirects must be 0 or more")

    def matches_host(self, host: str) -> bool:
        """Whether a (normalised) host matches one of the patterns."""
        if not self.allowed_hosts:
            return True
        for pattern in self.allowed_hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False

    @property
    def networks(self) -> tuple[AllowedNetwork, ...]:
        return _parse_networks(self.allowed_networks, source="EgressPolicy.allowed_networks")


def _normalise_pattern(pattern: str) -> str:
    pattern = pattern.strip()
    wildcard = pattern.startswith("*.")
    base = pattern[2:] if wildcard else pattern
    if "*" in base or "/" in base or (":" in base.strip("[]") and _ip_literal(base) is None):
        raise ValueError(f"Invalid host pattern {pattern!r}: use 'host.example' or '*.example'.")
    try:
        base = _normalise_host(base)
    except ValueError:
        raise ValueError(f"Invalid host pattern {pattern!r}.") from None
    if wildcard and _ip_literal(base) is not None:
        raise ValueError(f"Host pattern {pattern!r}: a wildcard cannot apply to an address.")
    if wildcard and "." not in base:
        raise ValueError(f"Host pattern {pattern!r} is too broad: name at least a domain.")
    return f"*.{base}" if wildcard else base


@dataclass(frozen=True)
class AllowedNetwork:
    """One entry of an allow list: a network and the ports open in it
    (``None``: every port)."""

    network: Network
    ports: frozenset[int] | None = None

    def __str__(self) -> str:
        if self.ports is None:
            return str(self.network)
        where = f"[{self.network}]" if self.network.version == 6 else str(self.network)
        return f"{where}:{','.join(str(port) for port in sorted(self.ports))}"

    def covers(self, address: Address) -> bool:
        """The address is inside. A metadata address needs a network of its
        own (``169.254.169.254/32``): a broad ``169.254.0.0/16`` does not
        open it."""
        if self.network.version != address.version or address not in self.network:
            return False
        return address not in _METADATA_ADDRESSES or self.network.num_addresses == 1

    def allows(self, address: Address, port: int | None) -> bool:
        return self.covers(address) and (self.ports is None or port in self.ports)


NETWORK_SYNTAX = (
    "a network (10.20.0.0/16) or an address (10.20.0.5), optionally with the only ports "
    "open in it: 10.20.0.5:443, 10.20.0.0/16:443,8443; IPv6 in brackets: [fd00::1]:443, "
    "[fd00::/64]:443,8443"
)
_BRACKETED = re.compile(r"\[(?P<network>[^\]]*)\](?::(?P<port>.*))?")


def parse_allowed_networks(entries: Iterable[str], *, source: str) -> tuple[AllowedNetwork, ...]:
    """Parse an allow list such as ``PORTAL_EGRESS_ALLOWED_NETWORKS``.

    Entries are separated by commas (several strings, or one string with
    commas: the same). An entry is a network or an address, open on every
    port, or followed by ``:port`` to open only that port; a bare number
    after such an entry adds a port to it, so ``10.20.0.0/16:443,8443``
    opens 443 and 8443 and nothing else. An IPv6 entry with ports is
    written in brackets (``[fd00::/64]:443``): without them ``fd00::1:443``
    is an address, open on every port. Raises ``ValueError`` with a message
    naming ``source`` and the entry.
    """
    parsed: list[AllowedNetwork] = []
    for text in (part.strip() for entry in entries for part in str(entry).split(",")):
        if not text:
            continue
        if text.isascii() and text.isdigit():  # another port of the entry before
            if not parsed:
                raise ValueError(
                    f"{source}: {text!r} is a port, not a network. Write {NETWORK_SYNTAX}."
                )
            last = parsed[-1]
            if last.ports is None:
                raise ValueError(
                    f"{source}: {text!r} is a port, but {last} before it names none (it is "
                    f"open on every port): write {last}:{text} to open only that port."
                )
            parsed[-1] = AllowedNetwork(last.network, last.ports | {_port(text, source)})
            continue
        parsed.append(_parse_entry(text, source))
    return tuple(parsed)


def _parse_entry(text: str, source: str) -> AllowedNetwork:
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed:
        network_text, port_text = bracketed["network"], bracketed["port"]
    elif text.count(":") == 1:  # IPv4 with a port (IPv6 has more colons)
        network_text, port_text = text.split(":")
    else:
        network_text, port_text = text, None
    try:
        network = ipaddress.ip_network(network_text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{source}: {text!r} is not a network. Write {NETWORK_SYNTAX}.") from None
    if bracketed and network.version != 6:
        raise ValueError(f"{source}: {text!r}: brackets are for IPv6 only; write {network}.")
    if port_text is None:
        return AllowedNetwork(network)
    return AllowedNetwork(network, frozenset({_port(port_text, source, entry=text)}))


def _port(text: str, source: str, *, entry: str = "") -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        where = f" in {entry!r}" if entry else ""
        raise ValueError(f"{source}: {text!r}{where} is not a port (1 to 65535).")
    return int(text)


@functools.lru_cache(maxsize=256)
def _parse_networks(entries: tuple[str, ...], *, source: str) -> tuple[AllowedNetwork, ...]:
    return parse_allowed_networks(entries, source=source)


# --- Addresses --------------------------------------------------------------

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _refusal_reason(address: Address) -> str | None:
    """Why an address is not a public internet address, in plain words."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = _refusal_reason(embedded)
            if reason:
                return f"an IPv6 form of {embedded}, {reason}"
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_multicast:
        return "a multicast address"
    if any(address in net for net in _PRIVATE_NETWORKS):
        return "a private network address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public internet address"
    return None


def _operator_networks() -> tuple[AllowedNetwork, ...]:
    entries = tuple(getattr(settings, "PORTAL_EGRESS_ALLOWED_NETWORKS", ()) or ())
    return _parse_networks(entries, source="PORTAL_EGRESS_ALLOWED_NETWORKS")


def _explicitly_allowed(
    address: Address, port: int | None, networks: Iterable[AllowedNetwork]
) -> bool:
    """Inside an allowed network, on a port open in it."""
    return any(net.allows(address, port) for net in networks)


def _ports_open(address: Address, networks: Iterable[AllowedNetwork]) -> list[int]:
    """The ports allowed networks open for this address, when only some are."""
    return sorted({p for net in networks if net.covers(address) for p in net.ports or ()})


def _ports_text(ports: list[int]) -> str:
    words = [str(port) for port in ports]
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return f"port{'s' if len(words) > 1 else ''} {listed}"


def _plain(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def check_address(
    address: str | Address,
    policy: EgressPolicy | None = None,
    *,
    host: str | None = None,
    plain_http: bool = False,
    port: int | None = None,
) -> None:
    """Refuse an address the portal may not connect to (:class:`EgressDenied`).

    ``host`` is the name that resolved to it, for the message; ``port`` the
    port the call goes to (an allowed network open on some ports only does
    not allow an unknown port). With ``plain_http`` the address must be
    inside an explicitly allowed network (the operator's or the policy's),
    public or not.
    """
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])
    address = _plain(address)
    networks = _operator_networks() + (policy.networks if policy else ())
    if _explicitly_allowed(address, port, networks):
        return
    reason = _refusal_reason(address)
    if not reason and not plain_http:
        return
    open_ports = _ports_open(address, networks)  # inside an allowed network, other ports
    only = f"only on {_ports_text(open_ports)}" if open_ports else ""
    if only and port:
        only += f", not on port {port}"
    if reason:
        if host and host != str(address):
            subject = f"The address {host} resolves to {address},"
        else:
            subject = f"The address {address} is"
        verdict = f"may reach it {only}" if only else "may not reach it"
        raise EgressDenied(f"{subject} {reason}; connections {verdict}.")
    name = host or str(address)
    if only:
        raise EgressDenied(f"{name} may be reached over plain http {only}.")
    raise EgressDenied(
        f"{name} would be reached over plain http; connections must use https "
        "(http is allowed only for addresses the operator allows)."
    )


# --- URLs -------------------------------------------------------------------


def _split(url: str) -> tuple[str, str, int | None, bool, str]:
    """(scheme, normalised host, port, has_userinfo, raw host) as urllib3 sees them."""
    authority = url.split("://", 1)[-1]
    authority = re.split(r"[/?#]", authority, maxsplit=1)[0]
    if "\\" in authority or any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise EgressDenied("The address is not a valid URL.")
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise EgressDenied("The address is not a valid URL.") from None
    scheme = (parsed.scheme or "").lower()
    if not parsed.host:
        raise EgressDenied("The address has no host name.")
    try:
        host = _normalise_host(parsed.host)
    except ValueError:
        raise EgressDenied("The address does not contain a valid host name.") from None
    return scheme, host, parsed.port, parsed.auth is not None, parsed.host.strip("[]")


def check_url(url: str, policy: EgressPolicy, *, resolve: bool = False) -> None:
    """Refuse a URL this policy does not allow (:class:`EgressDenied`).

    Checks the scheme, user information, host pattern and, when the host is an
    address itself (``10.1.2.3``, ``[::1]``, ``2130706433``), that address.
    Names are checked at connect time against the addresses they resolve to
    (that check is the one that counts); ``resolve=True`` also resolves them
    now, for validating a form field, and a name that cannot be resolved then
    raises :class:`EgressError`. Plain ``http`` to a name passes here only if
    some network is explicitly allowed; the connection itself then requires
    the address to be inside one.
    """
    scheme, host, port, has_userinfo, raw_host = _split(url)
    port = port or (80 if scheme == "http" else 443)
    if scheme not in ("https", "http"):
        raise EgressDenied(
            f"Only https:// addresses can be used; this one uses {scheme or 'no'} scheme."
        )
    if has_userinfo:
        raise EgressDenied(
            "The address contains a user name or password; enter credentials in the "
            "connection's credential fields instead."
        )
    plain_http = scheme == "http"
    literal = _ip_literal(host)
    if literal is not None:
        shown = raw_host if raw_host.rstrip(".").lower() != host else host
        check_address(literal, policy, host=shown, plain_http=plain_http, port=port)
    if not policy.matches_host(host):
        raise EgressDenied(
            f"The host {host} is not one this connection may reach "
            f"(allowed: {', '.join(policy.allowed_hosts)})."
        )
    if literal is not None:
        return
    if plain_http and not (_operator_networks() or policy.networks):
        raise EgressDenied(
            f"{host} would be reached over plain http; connections must use https "
            "(http is allowed only for addresses the operator allows)."
        )
    if resolve:
        for address in _resolve(host, port):
            check_address(address, policy, host=host, plain_http=plain_http, port=port)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise EgressError(
            f"Could not reach {host}: the name could not be found (DNS).", host=host, reason="dns"
        ) from None
    return [info[4][0] for info in infos]


# --- Transport: the connected-address check ---------------------------------


class _Guard:
    """What a connection needs to validate the addresses it connects to."""

    def __init__(self, policy: EgressPolicy):
        self.policy = policy

    def check(self, address: str, host: str, *, plain_http: bool, port: int) -> None:
        check_address(address, self.policy, host=host, plain_http=plain_http, port=port)


# --- Transport: the total deadline and strict answers ------------------------


class _Deadline:
    """The time one call may take in all, redirects and body included.

    A watchdog thread shuts down the sockets the call uses when the time
    passes; whatever read is waiting then ends at once (TLS or not), and
    :attr:`passed` tells the call why. The connections register their socket
    with the call's deadline (a context variable holds it); the deadline
    keeps a duplicate of each socket's file descriptor, so it never shuts
    down a descriptor that was closed and reused meanwhile.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.passed = False
        self._ended = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._pass)
        self._timer.name = "egress-deadline"
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._token = _current_deadline.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._timer.cancel()
        self._timer.join()
        with self._lock:
            self._ended = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
        _current_deadline.reset(self._token)

    def watch(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if self._ended:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self.passed:
                _shut_down(duplicate)

    def _pass(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.passed = True
            for sock in self._sockets:
                _shut_down(sock)


_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "egress_deadline", default=None
)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.shutdown(socket.SHUT_RDWR)


class _AnswerCutOff(http.client.HTTPException):
    """The connection closed in the middle of the answer's head."""


class _LastLine:
    """The response's file during ``begin()``, remembering the last line read."""

    def __init__(self, fp: Any):
        self.fp = fp
        self.last: bytes | None = None

    def readline(self, limit: int = -1) -> bytes:
        self.last = self.fp.readline(limit)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fp, name)


class _StrictHTTPResponse(http.client.HTTPResponse):
    """http.client's response, strict where it is lenient.

    http.client takes the end of the connection for the end of the head, so
    a head cut off half-way reads as a complete answer with an empty body:
    here it raises :class:`_AnswerCutOff`. And when the promised
    ``Content-Length`` has been read, bytes already waiting on the
    connection mean the answer is longer than it said: ``overrun`` is set
    (the client refuses the answer; the connection is never reused).
    """

    overrun = False

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any):
        super().__init__(sock, *args, **kwargs)
        self._egress_sock = sock
        self._length_promised = False

    def begin(self) -> None:
        if self.headers is not None:
            return
        lines = _LastLine(self.fp)
        self.fp = lines
        try:
            super().begin()
        finally:
            if self.fp is lines:
                self.fp = lines.fp
        if lines.last == b"":
            self._close_conn()
            raise _AnswerCutOff("the connection closed before the end of the answer's head")
        self._length_promised = bool(self.length)  # a Content-Length above 0

    def _close_conn(self) -> None:
        if self._length_promised and self.length == 0 and self.fp is not None:
            self._length_promised = False
            self.overrun = _bytes_waiting(self.fp, self._egress_sock)
        super()._close_conn()


def _bytes_waiting(fp: Any, sock: socket.socket) -> bool:
    """Whether more bytes are buffered or waiting on the socket (no wait)."""
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0)
        return bool(fp.peek(1))
    except (OSError, ValueError):  # nothing waiting (also ssl.SSLWantReadError)
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


class _GuardedConnectionMixin:
    """Resolve, validate every address, connect only to a validated one.

    Replaces ``urllib3.connection.HTTPConnection._new_conn`` (which calls
    ``urllib3.util.connection.create_connection``); everything else, TLS
    wrapping with the host name for SNI and certificate checks included, is
    urllib3's own. Each request registers the connection's socket with the
    call's deadline, and answers are read by :class:`_StrictHTTPResponse`.
    """

    _egress_plain_http = True
    response_class = _StrictHTTPResponse

    def __init__(self, *args: Any, egress_guard: _Guard, **kwargs: Any):
        self._egress_guard = egress_guard
        self._egress_deadline: _Deadline | None = None
        super().__init__(*args, **kwargs)

    def _egress_watch(self, sock: socket.socket) -> None:
        """Put this connection's socket under the current call's deadline."""
        deadline = _current_deadline.get()
        if deadline is not None and self._egress_deadline is not deadline:
            self._egress_deadline = deadline
            deadline.watch(sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # reused from the pool (a new one: _new_conn)
            self._egress_watch(self.sock)
        super().request(*args, **kwargs)

    def close(self) -> None:
        self._egress_deadline = None  # a new socket, if any, is watched anew
        super().close()

    def _new_conn(self) -> socket.socket:
        host = self._dns_host.strip("[]")
        shown = self.host.strip("[]")
        guard = self._egress_guard
        plain = self._egress_plain_http
        try:
            infos = socket.getaddrinfo(host, self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        if not infos:
            raise NameResolutionError(self.host, self, socket.gaierror("no address"))
        # Refuse the name if any of its addresses is refused: a name that
        # mixes public and private addresses is not a public service.
        for info in infos:
            guard.check(info[4][0], shown, plain_http=plain, port=self.port)

        error: OSError | None = None
        for family, socktype, proto, _canonname, sockaddr in infos:
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)
                # Belt and braces: the peer is what we validated.
                peer = sock.getpeername()[0]
                try:
                    guard.check(peer, shown, plain_http=plain, port=self.port)
                except EgressDenied:
                    sock.close()
                    raise
                error = None
                sys.audit("http.client.connect", self, self.host, self.port)
                self._egress_watch(sock)  # before TLS: the handshake is watched too
                return sock
            except TimeoutError as exc:
                if sock is not None:
                    sock.close()
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                error = exc
                if sock is not None:
                    sock.close()
        assert error is not None
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    _egress_plain_http = True


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    _egress_plain_http = False


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedPoolManager(PoolManager):
    def __init__(self, *args: Any, egress_guard: _Guard, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._egress_guard = egress_guard
        self.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def _new_pool(self, scheme, host, port, request_context=None):  # type: ignore[override]
        # The pool key is computed before this point; the guard travels as a
        # connection keyword argument (pool classes pass **conn_kw through).
        context = dict(request_context if request_context is not None else self.connection_pool_kw)
        context["egress_guard"] = self._egress_guard
        return super()._new_pool(scheme, host, port, context)


class EgressAdapter(HTTPAdapter):
    """requests transport adapter that enforces a policy on every send.

    Mount it on any ``requests.Session`` (``EgressSessionMixin`` does) for
    ``https://`` and ``http://``. On each send it checks the URL against the
    policy, sets the default timeouts if none are given, refuses proxies and
    disabled certificate verification, and its connections check the address
    they actually connect to. It does not follow redirects itself.
    """

    def __init__(self, policy: EgressPolicy, **kwargs: Any):
        self.policy = policy
        self._guard = _Guard(policy)
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):  # type: ignore[override]
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _GuardedPoolManager(
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            egress_guard=self._guard,
            **pool_kwargs,
        )

    def proxy_manager_for(self, proxy, **proxy_kwargs):  # type: ignore[override]
        raise EgressDenied("Outbound calls do not go through proxies.")

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # type: ignore[override]
        if proxies and any(proxies.values()):
            raise EgressDenied("Outbound calls do not go through proxies.")
        if verify is False:
            raise ValueError("Certificate verification cannot be turned off for outbound calls.")
        check_url(request.url, self.policy)
        return super().send(
            request,
            stream=stream,
            timeout=_timeouts(timeout),
            verify=verify,
            cert=cert,
            proxies=None,
        )


# --- Session: redirects, headers, errors -------------------------------------


def _timeouts(timeout: Any) -> Any:
    """Never unbounded: ``None`` becomes the settings' (connect, read)."""
    connect = float(getattr(settings, "PORTAL_HTTP_CONNECT_TIMEOUT", 5))
    read = float(getattr(settings, "PORTAL_HTTP_READ_TIMEOUT", 20))
    if timeout is None:
        return (connect, read)
    if isinstance(timeout, tuple):
        c, r = timeout
        return (connect if c is None else c, read if r is None else r)
    return timeout


def _timeout_parts(timeout: Any) -> tuple[float | None, float | None]:
    timeout = _timeouts(timeout)
    if isinstance(timeout, tuple):
        return timeout
    if isinstance(timeout, int | float):
        return (timeout, timeout)
    return (getattr(timeout, "connect_timeout", None), getattr(timeout, "read_timeout", None))


@functools.lru_cache(maxsize=1)
def user_agent() -> str:
    try:
        version = metadata.version("connections-portal")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        version = "0"
    return f"ConnectionsPortal/{version}"


# Headers kept on a redirect to another origin; everything else (Authorization,
# Cookie, X-Api-Key, PRIVATE-TOKEN, ...) may carry a credential and is dropped.
_CROSS_ORIGIN_SAFE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Cache-Control",
        "Connection",
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "User-Agent",
    )
)
_BODY_HEADERS = ("Content-Length", "Content-Type", "Transfer-Encoding")


def _origin(url: str) -> tuple[str, str, int]:
    scheme, host, port, _, _ = _split(url)
    return scheme, host, port or (443 if scheme == "https" else 80)


def _host_of(url: str) -> str:
    try:
        return _split(url)[1]
    except EgressDenied:
        return "the host"


def _fmt_seconds(value: float | None) -> str:
    return "the time limit" if value is None else f"{value:g} s"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [*getattr(current, "args", ()), getattr(current, "reason", None)]
        linked += [current.__cause__, current.__context__]
        stack.extend(e for e in linked if isinstance(e, BaseException))


def _fmt_bytes(value: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"


def _as_egress_error(
    exc: BaseException, url: str, timeout: Any, *, deadline: _Deadline, reading_body: bool
) -> EgressError:
    """The plain-words :class:`EgressError` for a failure of ``requests``,
    urllib3 or the socket: each cause is looked for in the whole chain."""
    host = _host_of(url)
    connect, read = _timeout_parts(timeout)
    chain = list(_chain(exc))

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    def error(message: str, reason: str) -> EgressError:
        return EgressError(message, host=host, reason=reason)

    if deadline.passed:  # whatever broke, the watchdog broke it
        return error(
            f"Could not reach {host}: no complete answer within {deadline.seconds:g} s.",
            "deadline",
        )
    if has(NameResolutionError, socket.gaierror):
        return error(f"Could not reach {host}: the name could not be found (DNS).", "dns")
    if has(ConnectionRefusedError):
        return error(f"Could not reach {host}: the connection was refused.", "refused")
    # urllib3's NewConnectionError subclasses ConnectTimeoutError: exclude it.
    if isinstance(exc, requests.ConnectTimeout) or any(
        isinstance(e, ConnectTimeoutError) and not isinstance(e, NewConnectionError) for e in chain
    ):
        return error(
            f"Could not reach {host}: connection timed out after {_fmt_seconds(connect)}.",
            "connect-timeout",
        )
    if isinstance(exc, requests.ReadTimeout) or has(ReadTimeoutError, TimeoutError):
        if reading_body:
            return error(
                f"{host} stopped sending for {_fmt_seconds(read)} before its answer was complete.",
                "read-timeout",
            )
        return error(
            f"Could not reach {host}: no answer within {_fmt_seconds(read)}.", "read-timeout"
        )
    if isinstance(exc, requests.exceptions.SSLError) or has(ssl.SSLError):
        if has(ssl.SSLCertVerificationError):
            detail = "its certificate could not be verified"
        else:
            detail = "the secure (TLS) connection failed"
        return error(f"Could not reach {host}: {detail}.", "tls")
    # RemoteDisconnected (closed without an answer) is a ConnectionResetError too.
    if has(http.client.RemoteDisconnected, BrokenPipeError, ConnectionAbortedError):
        return error(f"{host} closed the connection before its answer was complete.", "closed")
    if has(ConnectionResetError):
        return error(f"{host} reset the connection before its answer was complete.", "reset")
    if has(InvalidChunkLength):  # an IncompleteRead too: check it first
        return error(f"{host} answered with something that is not valid HTTP.", "protocol")
    if (
        has(_AnswerCutOff, BodyCutOff, http.client.IncompleteRead)
        or isinstance(exc, requests.exceptions.ChunkedEncodingError)  # chunks ended early
    ):
        return error(f"{host} closed the connection before its answer was complete.", "closed")
    if isinstance(exc, requests.exceptions.ContentDecodingError) or has(DecodeError):
        return error(f"{host} sent an answer that could not be decoded.", "protocol")
    if has(http.client.HTTPException):  # BadStatusLine, LineTooLong, UnknownProtocol...
        return error(f"{host} answered with something that is not valid HTTP.", "protocol")
    return error(f"Could not reach {host}: the connection failed.", "connection")


def _read_body(response: requests.Response, url: str, limit: int) -> None:
    """Read the answer's body into ``response`` (as ``requests`` would without
    ``stream``), decoded, refusing one longer than ``limit`` bytes or longer
    than its ``Content-Length``."""
    host = _host_of(url)
    too_large = EgressError(
        f"{host} sent an answer larger than {_fmt_bytes(limit)}; the portal stops reading there.",
        host=host,
        reason="too-large",
    )
    declared = response.headers.get("Content-Length", "").strip()
    has_body = response.request.method != "HEAD" and response.status_code not in (204, 304)
    if has_body and declared.isdigit() and int(declared) > limit:
        response.close()
        raise too_large
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > limit:
            response.close()
            raise too_large
    if getattr(getattr(response.raw, "_original_response", None), "overrun", False):
        response.close()
        raise EgressError(
            f"{host} sent more than the length it announced (Content-Length).",
            host=host,
            reason="protocol",
        )
    response._content = bytes(body)
    response._content_consumed = True


def _max_response_bytes() -> int:
    return int(getattr(settings, "PORTAL_HTTP_MAX_RESPONSE_BYTES", 10 * 1024 * 1024))


def _total_timeout() -> float:
    return float(getattr(settings, "PORTAL_HTTP_TOTAL_TIMEOUT", 30))


class EgressSessionMixin:
    """Make a ``requests.Session`` (or a subclass such as Authlib's
    ``OAuth2Session``) the portal's egress client::

        class PortalOAuth2Session(EgressSessionMixin, OAuth2Session): ...
        PortalOAuth2Session(client_id, ..., egress_policy=policy)

    It mounts :class:`EgressAdapter`, ignores proxies and ``.netrc`` from the
    environment, sets the User-Agent and follows redirects itself.
    """

    def __init__(self, *args: Any, egress_policy: EgressPolicy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.egress_policy = egress_policy
        self.trust_env = False  # no proxies, no .netrc credentials, no env CA paths
        self.proxies = {}
        self.headers["User-Agent"] = user_agent()
        adapter = EgressAdapter(egress_policy)
        # Replace every adapter: nothing this session sends bypasses the guard.
        self.adapters.clear()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    @property
    def max_redirects_allowed(self) -> int:
        cap = self.egress_policy.max_redirects
        if cap is None:
            return int(getattr(settings, "PORTAL_HTTP_MAX_REDIRECTS", 3))
        return cap

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if kwargs.get("proxies"):
            raise EgressDenied("Outbound calls do not go through proxies.")
        if kwargs.get("verify") is False:
            raise ValueError("Certificate verification cannot be turned off for outbound calls.")
        check_url(str(url), self.egress_policy)
        try:
            return super().request(method, url, *args, **kwargs)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema):
            raise EgressDenied("The address is not a valid URL.") from None
        except requests.exceptions.InvalidSchema:
            raise EgressDenied("Only https:// addresses can be used.") from None

    def resolve_redirects(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        # Redirects are followed by send() below, never by requests.
        return iter(())

    def send(self, request: PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send, following redirects, within the total deadline; read the
        body (capped) unless the caller streams it."""
        follow = kwargs.pop("allow_redirects", True)
        stream = kwargs.pop("stream", False)
        kwargs["timeout"] = _timeouts(kwargs.get("timeout"))
        kwargs["proxies"] = {}
        with _Deadline(_total_timeout()) as deadline:
            return self._send_within(request, deadline, follow=follow, stream=stream, **kwargs)

    def _send_within(
        self, request: PreparedRequest, deadline: _Deadline, *, follow: bool, stream: bool, **kwargs
    ) -> requests.Response:
        history: list[requests.Response] = []
        current = request
        while True:
            reading_body = False
            try:
                check_url(current.url, self.egress_policy)
                response = super().send(current, allow_redirects=False, stream=True, **kwargs)
                reading_body = True
                if not stream:
                    _read_body(response, current.url, _max_response_bytes())
                if deadline.passed:  # the watchdog ended a body read "cleanly"
                    response.close()
                    raise requests.ConnectionError("deadline")
            # requests wraps what urllib3 and sockets raise; the rest, in case.
            except (requests.RequestException, OSError, http.client.HTTPException) as exc:
                raise _as_egress_error(
                    exc,
                    current.url,
                    kwargs["timeout"],
                    deadline=deadline,
                    reading_body=reading_body,
                ) from None
            except EgressDenied as exc:
                if not history:
                    raise
                raise EgressDenied(
                    f"{_host_of(history[-1].url)} redirected the call to "
                    f"{_host_of(current.url)}, which was refused. {exc}"
                ) from None
            if not (follow and response.is_redirect):
                response.history = history
                return response
            if len(history) >= self.max_redirects_allowed:
                response.close()
                raise EgressDenied(
                    f"{_host_of(current.url)} redirected more than "
                    f"{self.max_redirects_allowed} times; the portal stops there."
                )
            response.close()
            history.append(response)
            current = self._next_hop(current, response)

    def _next_hop(self, previous: PreparedRequest, response: requests.Response) -> PreparedRequest:
        location = self.get_redirect_target(response) or ""
        if location.startswith("//"):
            location = f"{_origin(previous.url)[0]}:{location}"
        nxt = previous.copy()
        try:
            # Same normalisation as the first request: IDNA host, quoting.
            nxt.prepare_url(urljoin(previous.url, location), None)
        except requests.RequestException:
            raise EgressDenied(
                f"{_host_of(previous.url)} redirected the call to an address that is not a "
                "valid URL."
            ) from None
        url = nxt.url
        same_origin = _origin(url) == _origin(previous.url)
        status = response.status_code
        method = (previous.method or "GET").upper()
        keep_body = status in (307, 308)
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            nxt.method = "GET"
        if not keep_body:
            nxt.body = None
            for header in _BODY_HEADERS:
                nxt.headers.pop(header, None)
        elif not same_origin and nxt.body is not None:
            raise EgressDenied(
                f"{_host_of(previous.url)} redirected a request with content to another host, "
                f"{_host_of(url)}; the portal does not send it there."
            )
        elif nxt._body_position is not None:
            rewind_body(nxt)

        nxt.headers.pop("Cookie", None)
        if same_origin:
            jar = nxt._cookies if nxt._cookies is not None else RequestsCookieJar()
            extract_cookies_to_jar(jar, previous, response.raw)
            merge_cookies(jar, self.cookies)
            nxt.prepare_cookies(jar)
        else:
            # Another origin: drop every credential the request carried.
            nxt.headers = CaseInsensitiveDict(
                {k: v for k, v in nxt.headers.items() if k.lower() in _CROSS_ORIGIN_SAFE_HEADERS}
            )
            nxt._cookies = RequestsCookieJar()
            # Auth handlers (digest, OAuth token refreshers) register hooks.
            nxt.hooks = {"response": []}
        return nxt


class EgressSession(EgressSessionMixin, requests.Session):
    """A ``requests.Session`` that applies an :class:`EgressPolicy` to every call."""

    def __init__(self, policy: EgressPolicy):
        super().__init__(egress_policy=policy)


def session(policy: EgressPolicy) -> EgressSession:
    """A session for several calls under one policy (connections are reused)."""
    return EgressSession(policy)


def request(method: str, url: str, *, policy: EgressPolicy, **kwargs: Any) -> requests.Response:
    """Make one outbound call; takes the keyword arguments of ``requests.request``.

    Raises :class:`EgressDenied` when the policy refuses the call (or a
    redirect of it) and :class:`EgressError` when the network fails.
    """
    s = session(policy)
    try:
        return s.request(method, url, **kwargs)
    finally:
        if not kwargs.get("stream"):
            s.close()
