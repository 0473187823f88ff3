"""The one outbound HTTP client (connections/egress.py) against real local servers.

Loopback is refused by default, so the tests that must reach a local server
allow 127.0.0.1/32 (and 127.0.0.2/32 for the "other host") through the
policy or the operator setting. Names are mapped to addresses by patching
``socket.getaddrinfo``; every "refused" test then proves with a probe that the
server never saw a connection.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connections import egress
from connections.egress import EgressAdapter, EgressDenied, EgressError, EgressPolicy

SECRET = "s3cret-token-value"
LOCAL = ("127.0.0.1/32",)
BOTH = ("127.0.0.1/32", "127.0.0.2/32")


# --- A recording HTTP server ---------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _handle(self):
        server: Server = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        seen = {
            "method": self.command,
            "path": path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        server.seen.append(seen)
        route = server.routes.get(path)
        if route is None and path.startswith("/hop/"):
            route = _hop
        status, headers, payload = route(seen) if route else (404, {}, b"not found")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = _handle


def _hop(seen):
    remaining = int(seen["path"].rsplit("/", 1)[1])
    if remaining == 0:
        return 200, {}, b"landed"
    return 302, {"Location": f"/hop/{remaining - 1}"}, b""


def _ok(seen):
    return 200, {"Content-Type": "text/plain"}, b"ok"


def _echo(seen):
    data = {
        "method": seen["method"],
        "headers": seen["headers"],
        "body": seen["body"].decode(),
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _slow(seen):
    time.sleep(1.0)
    return 200, {}, b"late"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: str, ssl_context: ssl.SSLContext | None = None):
        self.connections: list[tuple[str, int]] = []
        self.seen: list[dict] = []
        self.routes: dict[str, Callable] = {"/ok": _ok, "/echo": _echo, "/slow": _slow}
        self.ssl_context = ssl_context
        super().__init__((address, 0), _Handler)
        self.address = address
        self.port = self.server_address[1]

    def server_bind(self):
        # Skip HTTPServer's reverse DNS lookup (socket.getfqdn).
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, client = super().get_request()
        self.connections.append(client)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True)
        return sock, client

    def handle_error(self, request, client_address):  # failed TLS handshakes, resets
        pass

    def url(self, path: str = "/ok", host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.address}:{self.port}{path}"

    def assert_untouched(self) -> None:
        """Prove no connection ever reached this server.

        A probe connects last; the listen queue is first in, first out, so any
        earlier connection attempt would have been accepted before it.
        """
        conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
        conn.request("GET", "/probe")
        conn.getresponse().read()
        conn.close()
        deadline = time.monotonic() + 5
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.connections) == 1, self.connections
        assert [s["path"] for s in self.seen] == ["/probe"]

    def paths(self) -> list[str]:
        return [s["path"] for s in self.seen]


def _start(address: str, ssl_context: ssl.SSLContext | None = None) -> Server:
    server = Server(address, ssl_context)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    ).start()
    return server


@pytest.fixture
def server_a():
    server = _start("127.0.0.1")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server_b():
    """A second host: another loopback address, so it is a different network."""
    try:
        server = _start("127.0.0.2")
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound on this machine")
    yield server
    server.shutdown()
    server.server_close()


# --- Name resolution under the test's control ----------------------------------


@pytest.fixture
def dns(monkeypatch):
    """``dns["name"] = "1.2.3.4"`` (or a list, or a callable returning a list)."""
    table: dict[str, object] = {}
    real = socket.getaddrinfo

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        key = host.decode() if isinstance(host, bytes) else host
        key = (key or "").rstrip(".").lower()
        if key not in table:
            if key.endswith((".example", ".example.com", ".example.net", ".test")):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(host, port, family, type, proto, flags)
        entry = table[key]
        if isinstance(entry, BaseException):
            raise entry
        addresses = entry() if callable(entry) else entry
        if isinstance(addresses, str):
            addresses = [addresses]
        port = int(port or 0)
        out = []
        for address in addresses:
            if ipaddress.ip_address(address).version == 6:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return table


@pytest.fixture(autouse=True)
def _egress_settings(settings):
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = []
    settings.PORTAL_HTTP_CONNECT_TIMEOUT = 5
    settings.PORTAL_HTTP_READ_TIMEOUT = 20
    settings.PORTAL_HTTP_MAX_REDIRECTS = 3
    return settings


ANY_PUBLIC = EgressPolicy(allowed_hosts=())


# --- Addresses that are never reached ----------------------------------------------

REFUSED_HOSTS = [
    "localhost",
    "LOCALHOST",
    "127.0.0.1.",
    "127.0.0.1",
    "127.1",
    "2130706433",  # decimal
    "0x7f.1",  # hex + short form
    "0x7f000001",
    "0177.0.0.1",  # octal
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "0.0.0.0",  # noqa: S104
    "[::]",
    "169.254.169.254",  # cloud metadata
    "[::ffff:169.254.169.254]",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "[fe80::1]",
    "[fc00::1]",
    "224.0.0.1",
    "240.0.0.1",
    "[64:ff9b::7f00:1]",  # NAT64 form of 127.0.0.1
    "[2002:7f00:1::1]",  # 6to4 form of 127.0.0.1
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_loopback_private_and_metadata_forms_are_refused(server_a, host, scheme):
    url = f"{scheme}://{host}:{server_a.port}/ok"
    with pytest.raises(EgressDenied) as refused:
        egress.request("GET", url, policy=ANY_PUBLIC)
    assert "may not reach it" in str(refused.value) or "plain http" in str(refused.value)
    server_a.assert_untouched()


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("127.0.0.1", "The address 127.0.0.1 is a loopback address"),
        ("2130706433", "The address 2130706433 resolves to 127.0.0.1, a loopback address"),
        ("10.0.0.5", "a private network address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("[fe80::1]", "a link-local address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104
        ("224.0.0.1", "a multicast address"),
        ("[64:ff9b::a00:5]", "an IPv6 form of 10.0.0.5, a private network address"),
    ],
)
def test_check_url_explains_refused_literals_in_plain_words(host, words):
    with pytest.raises(EgressDenied, match=words):
        egress.check_url(f"https://{host}/", ANY_PUBLIC)


def test_public_looking_name_resolving_to_loopback_is_refused_before_connecting(server_a, dns):
    dns["evil.example.com"] = "127.0.0.1"
    egress.check_url(server_a.url(host="evil.example.com", scheme="https"), ANY_PUBLIC)  # name only
    with pytest.raises(EgressDenied, match="must use https"):
        egress.request("GET", server_a.url(host="evil.example.com"), policy=ANY_PUBLIC)
    with pytest.raises(EgressDenied) as refused:
        egress.request(
            "GET", server_a.url(host="evil.example.com", scheme="https"), policy=ANY_PUBLIC
        )
    assert str(refused.value) == (
        "The address evil.example.com resolves to 127.0.0.1, a loopback address; "
        "connections may not reach it."
    )
    server_a.assert_untouched()


def test_check_url_can_resolve_for_form_validation(dns):
    dns["portal.internal.example"] = "10.0.0.5"
    egress.check_url("https://portal.internal.example/", ANY_PUBLIC)
    with pytest.raises(EgressDenied) as refused:
        egress.check_url("https://portal.internal.example/", ANY_PUBLIC, resolve=True)
    assert str(refused.value) == (
        "The address portal.internal.example resolves to 10.0.0.5, a private network address; "
        "connections may not reach it."
    )
    with pytest.raises(EgressError, match=r"nowhere\.example: the name could not be found"):
        egress.check_url("https://nowhere.example/", ANY_PUBLIC, resolve=True)


def test_dns_rebinding_is_caught_at_connect_time(server_a, dns):
    """The name looks public when checked, then resolves to loopback: the
    connection validates what it actually connects to."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    dns["rebind.example.com"] = lambda: next(answers)
    url = server_a.url(host="rebind.example.com", scheme="https")
    egress.check_url(url, ANY_PUBLIC, resolve=True)  # first answer: public
    with pytest.raises(EgressDenied, match=re.escape("resolves to 127.0.0.1")):
        egress.request("GET", url, policy=ANY_PUBLIC)
    server_a.assert_untouched()


def test_a_name_with_any_refused_address_is_refused(server_a, dns):
    dns["mixed.example.com"] = ["127.0.0.1", "10.0.0.5"]
    policy = EgressPolicy((), allowed_networks=LOCAL)
    with pytest.raises(
        EgressDenied, match=re.escape("resolves to 10.0.0.5, a private network address")
    ):
        egress.request("GET", server_a.url(host="mixed.example.com"), policy=policy)
    server_a.assert_untouched()


def test_the_adapter_guards_a_plain_requests_session(server_a, dns):
    """What Authlib's OAuth2Session will use: the adapter alone checks the URL
    and the connected address."""
    dns["evil.example.com"] = "127.0.0.1"
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", EgressAdapter(ANY_PUBLIC))
    s.mount("https://", EgressAdapter(ANY_PUBLIC))
    with pytest.raises(EgressDenied, match="must use https"):
        s.get(server_a.url(host="evil.example.com"))
    with pytest.raises(EgressDenied, match=re.escape("resolves to 127.0.0.1, a loopback address")):
        s.get(server_a.url(host="evil.example.com", scheme="https"))
    server_a.assert_untouched()

    s.mount("http://", EgressAdapter(EgressPolicy((), allowed_networks=LOCAL)))
    assert s.get(server_a.url(host="evil.example.com")).text == "ok"


# --- Allowed local addresses (the Sandbox case) ----------------------------------


def test_policy_allowed_network_reaches_the_local_server(server_a, monkeypatch):
    timeouts = []
    real_send = requests.adapters.HTTPAdapter.send

    def spy(self, request, **kwargs):
        timeouts.append(kwargs["timeout"])
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", spy)
    policy = EgressPolicy(("127.0.0.1",), allowed_networks=LOCAL)
    response = egress.request("GET", server_a.url("/echo"), policy=policy)
    assert response.status_code == 200
    assert response.json()["headers"]["user-agent"].startswith("ConnectionsPortal/")
    assert timeouts == [(5.0, 20.0)]

    egress.request("GET", server_a.url(), policy=policy, timeout=2)
    assert timeouts[-1] == 2


def test_operator_setting_allows_a_network(server_a, dns, settings):
    dns["sandbox.example"] = "127.0.0.1"
    with pytest.raises(EgressDenied):
        egress.request("GET", server_a.url(host="sandbox.example"), policy=ANY_PUBLIC)
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    response = egress.request("GET", server_a.url(host="sandbox.example"), policy=ANY_PUBLIC)
    assert response.text == "ok"
    assert server_a.seen[-1]["headers"]["host"] == f"sandbox.example:{server_a.port}"


def test_session_reuses_connections_and_keeps_the_policy(server_a):
    policy = EgressPolicy((), allowed_networks=LOCAL)
    with egress.session(policy) as s:
        assert s.get(server_a.url()).text == "ok"
        assert s.get(server_a.url("/echo")).json()["method"] == "GET"
        with pytest.raises(EgressDenied):
            s.get("https://169.254.169.254/latest/meta-data/")
    assert len(server_a.connections) == 1


def test_plain_http_only_to_explicitly_allowed_addresses(dns):
    dns["api.example.com"] = "93.184.216.34"
    with pytest.raises(EgressDenied, match="must use https"):
        egress.check_url("http://api.example.com/", ANY_PUBLIC)
    with pytest.raises(EgressDenied, match="must use https"):
        egress.check_url("http://93.184.216.34/", EgressPolicy((), allowed_networks=LOCAL))
    # A network is allowed, so the name passes the URL check; the connection
    # then refuses a public address over plain http, before connecting.
    policy = EgressPolicy((), allowed_networks=LOCAL)
    egress.check_url("http://api.example.com/", policy)
    with pytest.raises(EgressDenied, match="must use https"):
        egress.request("GET", "http://api.example.com/", policy=policy)
    with pytest.raises(EgressDenied, match="must use https"):
        egress.check_url("http://api.example.com/", policy, resolve=True)


def test_metadata_address_is_not_opened_by_a_broad_network():
    broad = EgressPolicy((), allowed_networks=("169.254.0.0/16",))
    egress.check_url("http://169.254.10.10/", broad)
    with pytest.raises(EgressDenied, match="cloud metadata"):
        egress.check_url("http://169.254.169.254/", broad)
    exact = EgressPolicy((), allowed_networks=("169.254.169.254/32",))
    egress.check_url("http://169.254.169.254/", exact)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://api.github.com/", "Only https://"),
        ("file:///etc/passwd", "no host name|Only https://"),
        ("gopher://api.github.com/", "Only https://"),
        ("https:///nohost", "no host name"),
        ("https://api.github.com\\@evil.example/", "not a valid URL"),
    ],
)
def test_malformed_or_non_https_urls_are_refused(url, words):
    with pytest.raises(EgressDenied, match=words):
        egress.check_url(url, ANY_PUBLIC)
    with pytest.raises(EgressDenied):
        egress.request("GET", url, policy=ANY_PUBLIC)


def test_userinfo_in_url_is_refused_without_echoing_it():
    with pytest.raises(EgressDenied) as refused:
        egress.request("GET", f"https://user:{SECRET}@api.github.com/user", policy=ANY_PUBLIC)
    assert "user name or password" in str(refused.value)
    assert SECRET not in str(refused.value)


# --- Host patterns -------------------------------------------------------------------

JIRA = EgressPolicy(("*.atlassian.net", "api.github.com"))


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com/user",
        "https://API.GitHub.com./user",
        "https://acme.atlassian.net/rest/api/3/myself",
        "https://a.b.atlassian.net/",
        "https://ACME.Atlassian.NET:443/",
        "https://acme.atlassian.net/search?jql=a\\b",  # a backslash outside the host is fine
        "https://my_team.atlassian.net/",
    ],
)
def test_host_patterns_match(url):
    egress.check_url(url, JIRA)


@pytest.mark.parametrize(
    "url",
    [
        "https://evilatlassian.net/",  # suffix confusion
        "https://atlassian.net/",  # the wildcard means a subdomain
        "https://acme.atlassian.net.evil.example/",
        "https://api.github.com.evil.example/",
        "https://github.com/",
        "https://xapi.github.com/",
        "https://93.184.216.34/",
    ],
)
def test_host_patterns_refuse(url):
    with pytest.raises(EgressDenied, match="is not one this connection may reach"):
        egress.check_url(url, JIRA)


def test_host_patterns_are_idna_normalised():
    policy = EgressPolicy(("bücher.example", "*.müller.example"))
    egress.check_url("https://xn--bcher-kva.example/", policy)
    egress.check_url("https://BÜCHER.example./", policy)
    egress.check_url("https://shop.xn--mller-kva.example/", policy)
    with pytest.raises(EgressDenied):
        egress.check_url("https://bucher.example/", policy)


@pytest.mark.parametrize(
    "pattern", ["*", "*.com", "api.*.example", "https://api.github.com", "", "*.10.0.0.1", "a b"]
)
def test_invalid_host_patterns_are_rejected(pattern):
    with pytest.raises(ValueError):
        EgressPolicy((pattern,))


def test_invalid_networks_are_rejected():
    with pytest.raises(ValueError, match="not a network"):
        EgressPolicy((), allowed_networks=("127.0.0.1/33",))


# --- Redirects ---------------------------------------------------------------------


def test_redirect_to_a_private_address_is_refused_and_never_contacted(server_a, server_b, dns):
    dns["public.example"] = "127.0.0.1"  # stands for a public address: allowed below
    dns["internal.example"] = "127.0.0.2"  # a private address the operator did not allow
    target = server_b.url("/ok", host="internal.example")
    server_a.routes["/redirect-to-private"] = lambda seen: (302, {"Location": target}, b"")
    policy = EgressPolicy((), allowed_networks=LOCAL)

    with pytest.raises(EgressDenied) as refused:
        egress.request(
            "GET", server_a.url("/redirect-to-private", host="public.example"), policy=policy
        )
    assert str(refused.value) == (
        "public.example redirected the call to internal.example, which was refused. "
        "The address internal.example resolves to 127.0.0.2, a loopback address; "
        "connections may not reach it."
    )
    assert server_a.paths() == ["/redirect-to-private"]
    server_b.assert_untouched()


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://167772161/admin",  # 10.0.0.1
    ],
)
def test_redirect_to_literal_private_addresses_is_refused(server_a, location):
    server_a.routes["/go"] = lambda seen: (301, {"Location": location}, b"")
    with pytest.raises(EgressDenied, match="redirected the call to"):
        egress.request("GET", server_a.url("/go"), policy=EgressPolicy((), allowed_networks=LOCAL))


def test_redirect_outside_the_host_patterns_is_refused(server_a, server_b, dns):
    dns["api.example.com"] = "127.0.0.1"
    dns["elsewhere.example"] = "127.0.0.2"
    target = server_b.url("/ok", host="elsewhere.example")
    server_a.routes["/go"] = lambda seen: (302, {"Location": target}, b"")
    policy = EgressPolicy(("api.example.com",), allowed_networks=BOTH)
    with pytest.raises(
        EgressDenied, match=re.escape("elsewhere.example is not one this connection")
    ):
        egress.request("GET", server_a.url("/go", host="api.example.com"), policy=policy)
    server_b.assert_untouched()


@pytest.fixture
def two_hosts(server_a, server_b, dns):
    dns["api.example.com"] = "127.0.0.1"
    dns["cdn.example.net"] = "127.0.0.2"
    landing = server_b.url("/echo", host="cdn.example.net")
    server_a.routes["/redirect-elsewhere"] = lambda seen: (
        302,
        {"Location": landing, "Set-Cookie": "fresh=1; Path=/"},
        b"",
    )
    server_a.routes["/redirect-same"] = lambda seen: (302, {"Location": "/echo"}, b"")
    policy = EgressPolicy(("api.example.com", "cdn.example.net"), allowed_networks=BOTH)
    return server_a, server_b, policy


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"Authorization": f"Bearer {SECRET}"}},
        {"auth": ("alice", SECRET)},
        {"cookies": {"session": SECRET}},
        {"headers": {"X-Api-Key": SECRET, "PRIVATE-TOKEN": SECRET}},
        {"headers": {"Cookie": f"sid={SECRET}", "Proxy-Authorization": f"Basic {SECRET}"}},
    ],
    ids=["authorization", "auth", "cookies", "api-key-headers", "raw-cookie-header"],
)
def test_credentials_are_stripped_on_a_redirect_to_another_host(two_hosts, credentials):
    server_a, server_b, policy = two_hosts
    response = egress.request(
        "GET",
        server_a.url("/redirect-elsewhere", host="api.example.com"),
        policy=policy,
        headers={"Accept": "application/json", **credentials.get("headers", {})},
        **{k: v for k, v in credentials.items() if k != "headers"},
    )
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [302]

    first = server_a.seen[0]["headers"]
    assert SECRET in json.dumps(first) or "authorization" in first  # sent to the first host
    landed = server_b.seen[0]["headers"]
    assert SECRET not in json.dumps(landed)
    for header in ("authorization", "cookie", "proxy-authorization", "x-api-key"):
        assert header not in landed
    assert landed["accept"] == "application/json"
    assert landed["user-agent"].startswith("ConnectionsPortal/")


def test_session_auth_is_not_sent_to_another_host(two_hosts):
    server_a, server_b, policy = two_hosts
    with egress.session(policy) as s:
        s.auth = ("alice", SECRET)
        s.get(server_a.url("/redirect-elsewhere", host="api.example.com"))
    assert "authorization" in server_a.seen[0]["headers"]
    assert "authorization" not in server_b.seen[0]["headers"]


def test_credentials_are_kept_on_a_same_host_redirect(two_hosts):
    server_a, _server_b, policy = two_hosts
    response = egress.request(
        "GET",
        server_a.url("/redirect-same", host="api.example.com"),
        policy=policy,
        headers={"Authorization": f"Bearer {SECRET}"},
        cookies={"sid": "abc"},
    )
    assert response.json()["headers"]["authorization"] == f"Bearer {SECRET}"
    assert "sid=abc" in response.json()["headers"]["cookie"]
    assert server_a.paths() == ["/redirect-same", "/echo"]


def test_a_body_is_not_replayed_to_another_host(two_hosts):
    server_a, server_b, policy = two_hosts
    landing = server_b.url("/echo", host="cdn.example.net")
    server_a.routes["/temporary"] = lambda seen: (307, {"Location": landing}, b"")
    with pytest.raises(EgressDenied, match="content to another host"):
        egress.request(
            "POST",
            server_a.url("/temporary", host="api.example.com"),
            policy=policy,
            data={"client_secret": SECRET},
        )
    server_b.assert_untouched()


@pytest.mark.parametrize(
    ("status", "method", "expected_method", "body_kept"),
    [
        (303, "POST", "GET", False),
        (303, "PUT", "GET", False),
        (302, "POST", "GET", False),
        (301, "POST", "GET", False),
        (307, "POST", "POST", True),
        (308, "PUT", "PUT", True),
        (302, "PUT", "PUT", False),
    ],
)
def test_redirect_method_semantics(server_a, status, method, expected_method, body_kept):
    server_a.routes["/moved"] = lambda seen: (status, {"Location": "/echo"}, b"")
    response = egress.request(
        method,
        server_a.url("/moved"),
        policy=EgressPolicy((), allowed_networks=LOCAL),
        data="payload=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    echoed = response.json()
    assert echoed["method"] == expected_method
    assert (echoed["body"] == "payload=1") is body_kept
    if not body_kept:
        assert "content-type" not in echoed["headers"]


def test_redirect_cap_from_settings_and_policy(server_a, settings):
    policy = EgressPolicy((), allowed_networks=LOCAL)
    assert egress.request("GET", server_a.url("/hop/3"), policy=policy).text == "landed"
    server_a.seen.clear()
    with pytest.raises(EgressDenied, match="redirected more than 3 times"):
        egress.request("GET", server_a.url("/hop/4"), policy=policy)
    assert server_a.paths() == ["/hop/4", "/hop/3", "/hop/2", "/hop/1"]

    settings.PORTAL_HTTP_MAX_REDIRECTS = 1
    with pytest.raises(EgressDenied, match="more than 1 times"):
        egress.request("GET", server_a.url("/hop/2"), policy=policy)

    strict = EgressPolicy((), allowed_networks=LOCAL, max_redirects=0)
    with pytest.raises(EgressDenied, match="more than 0 times"):
        egress.request("GET", server_a.url("/hop/1"), policy=strict)
    response = egress.request("GET", server_a.url("/hop/1"), policy=strict, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == "/hop/0"


def test_redirect_to_an_international_host_name(server_a, dns):
    dns["xn--bcher-kva.example"] = "127.0.0.1"
    location = f"http://bücher.example:{server_a.port}/echo"
    # http.server writes headers as latin-1; send the UTF-8 bytes a server would.
    raw = location.encode().decode("latin-1")
    server_a.routes["/go"] = lambda seen: (302, {"Location": raw}, b"")
    policy = EgressPolicy(("127.0.0.1", "bücher.example"), allowed_networks=LOCAL)
    response = egress.request("GET", server_a.url("/go"), policy=policy)
    assert response.json()["headers"]["host"] == f"xn--bcher-kva.example:{server_a.port}"
    with pytest.raises(EgressDenied, match="is not one this connection may reach"):
        egress.request("GET", server_a.url("/go"), policy=EgressPolicy(("127.0.0.1",), LOCAL))


def test_protocol_relative_redirect_is_checked(server_a, dns):
    dns["api.example.com"] = "127.0.0.1"
    dns["evil.example.com"] = "10.0.0.7"
    server_a.routes["/go"] = lambda seen: (302, {"Location": "//evil.example.com/steal"}, b"")
    with pytest.raises(EgressDenied, match=re.escape("resolves to 10.0.0.7")):
        egress.request(
            "GET",
            server_a.url("/go", host="api.example.com"),
            policy=EgressPolicy((), allowed_networks=LOCAL),
        )


# --- Network failures in plain words -------------------------------------------------


def test_dns_failure(dns):
    dns["nowhere.example.com"] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(EgressError) as failed:
        egress.request("GET", "https://nowhere.example.com/path?token=x", policy=ANY_PUBLIC)
    assert (
        str(failed.value)
        == "Could not reach nowhere.example.com: the name could not be found (DNS)."
    )
    assert failed.value.reason == "dns"


def test_connection_refused_message_has_no_query_or_credentials():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(EgressError) as failed:
        egress.request(
            "GET",
            f"http://127.0.0.1:{port}/v1/items?api_key={SECRET}",
            policy=EgressPolicy((), allowed_networks=LOCAL),
            headers={"Authorization": f"Bearer {SECRET}"},
        )
    assert str(failed.value) == "Could not reach 127.0.0.1: the connection was refused."
    assert failed.value.reason == "refused"
    assert failed.value.__cause__ is None  # the urllib3 text would carry the query string
    assert failed.value.__suppress_context__


def test_read_timeout_uses_the_setting(server_a, settings):
    settings.PORTAL_HTTP_READ_TIMEOUT = 0.2
    started = time.monotonic()
    with pytest.raises(EgressError) as failed:
        egress.request(
            "GET", server_a.url("/slow?secret=1"), policy=EgressPolicy((), allowed_networks=LOCAL)
        )
    assert time.monotonic() - started < 1.0
    assert str(failed.value) == "Could not reach 127.0.0.1: no answer within 0.2 s."
    assert failed.value.reason == "read-timeout"


@pytest.fixture
def unanswered_port():
    """A listening socket whose accept queue is full: new connections hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(16):
        filler = socket.socket()
        filler.settimeout(0.2)
        fillers.append(filler)
        try:
            filler.connect(("127.0.0.1", port))
        except TimeoutError:
            break
    else:
        pytest.skip("this kernel does not let the accept queue fill up")
    yield port
    for sock in [*fillers, listener]:
        sock.close()


def test_connect_timeout_uses_the_setting(unanswered_port, settings):
    settings.PORTAL_HTTP_CONNECT_TIMEOUT = 0.3
    with pytest.raises(EgressError) as failed:
        egress.request(
            "GET",
            f"http://127.0.0.1:{unanswered_port}/",
            policy=EgressPolicy((), allowed_networks=LOCAL),
        )
    assert str(failed.value) == "Could not reach 127.0.0.1: connection timed out after 0.3 s."
    assert failed.value.reason == "connect-timeout"


# --- Environment, proxies, verification ---------------------------------------------


def test_proxies_from_the_environment_are_ignored(server_a, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://10.9.9.9:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    response = egress.request(
        "GET", server_a.url(), policy=EgressPolicy((), allowed_networks=LOCAL)
    )
    assert response.text == "ok"


def test_explicit_proxies_and_disabled_verification_are_refused():
    with pytest.raises(EgressDenied, match="proxies"):
        egress.request(
            "GET",
            "https://api.github.com/",
            policy=ANY_PUBLIC,
            proxies={"https": "http://10.9.9.9:3128"},
        )
    with pytest.raises(ValueError, match="Certificate verification"):
        egress.request("GET", "https://api.github.com/", policy=ANY_PUBLIC, verify=False)


# --- HTTPS: connect to the validated address, verify the host name -------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA and a certificate for secure.test (not for 127.0.0.1)."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Egress test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secure.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("secure.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = folder / "cert.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = folder / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"ca": str(ca_file), "cert": str(cert_file), "key": str(key_file)}


@pytest.fixture
def tls_server(tls_files, dns):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = _start("127.0.0.1", context)
    server.server_names = server_names
    dns["secure.test"] = "127.0.0.1"
    dns["other.test"] = "127.0.0.1"
    yield server
    server.shutdown()
    server.server_close()


TLS_POLICY = EgressPolicy(("secure.test", "other.test"), allowed_networks=LOCAL)


def test_https_connects_to_the_validated_address_with_sni_and_verification(tls_server, tls_files):
    response = egress.request(
        "GET",
        tls_server.url("/ok", host="secure.test", scheme="https"),
        policy=TLS_POLICY,
        verify=tls_files["ca"],
    )
    assert response.text == "ok"
    assert tls_server.server_names == ["secure.test"]


def test_https_with_an_unknown_certificate_authority_fails(tls_server):
    with pytest.raises(EgressError) as failed:
        egress.request(
            "GET", tls_server.url("/ok", host="secure.test", scheme="https"), policy=TLS_POLICY
        )
    assert (
        str(failed.value) == "Could not reach secure.test: its certificate could not be verified."
    )
    assert failed.value.reason == "tls"


def test_https_certificate_must_match_the_host_name(tls_server, tls_files):
    with pytest.raises(EgressError, match="certificate could not be verified"):
        egress.request(
            "GET",
            tls_server.url("/ok", host="other.test", scheme="https"),
            policy=TLS_POLICY,
            verify=tls_files["ca"],
        )
    assert tls_server.seen == []


def test_https_to_a_refused_name_never_starts_a_handshake(tls_server, tls_files):
    policy = EgressPolicy(("secure.test",))  # loopback not allowed
    with pytest.raises(EgressDenied, match="loopback"):
        egress.request(
            "GET",
            tls_server.url("/ok", host="secure.test", scheme="https"),
            policy=policy,
            verify=tls_files["ca"],
        )
    assert tls_server.connections == []
