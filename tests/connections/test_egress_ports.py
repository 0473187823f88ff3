"""PORTAL_EGRESS_ALLOWED_NETWORKS entries may name ports: an operator who
allows an internal API host on 443 does not allow its database port.

``10.20.0.5:443``, ``10.20.0.0/16:443,8443`` (a bare number after an entry
with a port is another port of it), ``[fd00::1]:443``, ``[fd00::/64]:443,8443``;
a plain CIDR or address still opens every port.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from connections import egress
from connections.egress import AllowedNetwork, EgressDenied, EgressPolicy, parse_allowed_networks
from tests.connections.raw_listener import RawListener

# Names mapped to addresses (socket.getaddrinfo patched).
from tests.connections.test_egress import dns  # noqa: F401

BASE_DIR = Path(__file__).resolve().parents[2]
SOURCE = "PORTAL_EGRESS_ALLOWED_NETWORKS"


def _net(text: str, *ports: int) -> AllowedNetwork:
    return AllowedNetwork(ipaddress.ip_network(text), frozenset(ports) if ports else None)


# --- The syntax ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["10.0.0.0/8"], [_net("10.0.0.0/8")]),
        (["10.20.0.5"], [_net("10.20.0.5/32")]),
        (["10.20.0.5:443"], [_net("10.20.0.5/32", 443)]),
        # As the environment variable arrives (env.list splits at commas) or whole.
        (["10.20.0.0/16:443", "8443"], [_net("10.20.0.0/16", 443, 8443)]),
        (["10.20.0.0/16:443,8443"], [_net("10.20.0.0/16", 443, 8443)]),
        ([" 10.20.0.0/16:443 , 8443 ,"], [_net("10.20.0.0/16", 443, 8443)]),
        (["::1/128"], [_net("::1/128")]),
        (["fd00::1"], [_net("fd00::1/128")]),
        (["[fd00::1]"], [_net("fd00::1/128")]),
        (["[fd00::1]:443"], [_net("fd00::1/128", 443)]),
        (["[fd00::/64]:443", "8443"], [_net("fd00::/64", 443, 8443)]),
        (
            ["10.0.0.0/8", "10.20.0.5:443", "8443", "192.168.1.1", "[fd00::/64]:5000"],
            [
                _net("10.0.0.0/8"),
                _net("10.20.0.5/32", 443, 8443),
                _net("192.168.1.1/32"),
                _net("fd00::/64", 5000),
            ],
        ),
    ],
)
def test_entries_are_parsed(entries, expected):
    assert list(parse_allowed_networks(entries, source=SOURCE)) == expected


def test_an_entry_prints_in_the_syntax_it_was_read_in():
    entries = ["10.20.0.0/16:8443,443", "[fd00::/64]:443", "10.0.0.1", "::1"]
    parsed = parse_allowed_networks(entries, source=SOURCE)
    printed = [str(entry) for entry in parsed]
    assert printed == ["10.20.0.0/16:443,8443", "[fd00::/64]:443", "10.0.0.1/32", "::1/128"]
    assert parse_allowed_networks(printed, source=SOURCE) == parsed


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        (["nonsense"], "'nonsense' is not a network"),
        (["10.0.0.0/33"], "'10.0.0.0/33' is not a network"),
        (["10.0.0.5:"], "'' in '10.0.0.5:' is not a port (1 to 65535)"),
        (["10.0.0.5:0"], "'0' in '10.0.0.5:0' is not a port"),
        (["10.0.0.5:65536"], "'65536' in '10.0.0.5:65536' is not a port"),
        (["10.0.0.5:https"], "'https' in '10.0.0.5:https' is not a port"),
        (["10.0.0.5:443", "99999"], "'99999' is not a port"),
        (["[fd00::1]:"], "'' in '[fd00::1]:' is not a port"),
        (["[fd00::1]:443:80"], "is not a port"),
        (["[10.0.0.5]:443"], "brackets are for IPv6 only; write 10.0.0.5/32"),
        (["fd00::1]:443"], "is not a network"),
        (["443"], "'443' is a port, not a network"),
        (
            ["10.0.0.0/8", "443"],
            "'443' is a port, but 10.0.0.0/8 before it names none (it is open on every "
            "port): write 10.0.0.0/8:443 to open only that port.",
        ),
    ],
)
def test_bad_entries_are_refused_in_plain_words(entries, words):
    with pytest.raises(ValueError) as refused:
        parse_allowed_networks(entries, source=SOURCE)
    message = str(refused.value)
    assert message.startswith(f"{SOURCE}: ")
    assert words in message


def test_a_policy_refuses_a_bad_entry_too():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.5:0' is not a port"):
        EgressPolicy((), allowed_networks=("10.0.0.5:0",))


# --- The rule at work --------------------------------------------------------------


def _ok(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def two_ports():
    """Two listeners on 127.0.0.1: the allowed port and another one."""
    with RawListener(_ok) as allowed, RawListener(_ok) as other:
        yield allowed, other


ANY_PUBLIC = EgressPolicy(())


def test_an_allowed_address_on_an_allowed_port_passes(two_ports, settings):
    allowed, _ = two_ports
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = [f"127.0.0.1:{allowed.port}"]
    assert egress.request("GET", f"{allowed.url}/", policy=ANY_PUBLIC).text == "ok"


def test_the_same_address_on_another_port_is_refused_naming_the_port(two_ports, settings):
    allowed, other = two_ports
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = [f"127.0.0.0/8:{allowed.port}", "1"]
    with pytest.raises(EgressDenied) as refused:
        egress.request("GET", f"{other.url}/", policy=ANY_PUBLIC)
    ports = sorted([1, allowed.port])
    assert str(refused.value) == (
        "The address 127.0.0.1 is a loopback address; connections may reach it only on "
        f"ports {ports[0]} and {ports[1]}, not on port {other.port}."
    )
    assert other.accepted == 0


def test_a_name_is_refused_at_connect_time_on_another_port(two_ports, settings, dns):  # noqa: F811
    """The connect-time guard (the check that counts for names) knows the port."""
    allowed, other = two_ports
    dns["internal.example.test"] = "127.0.0.1"
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = [f"127.0.0.1:{allowed.port}"]
    url = "http://internal.example.test:{port}/"
    assert egress.request("GET", url.format(port=allowed.port), policy=ANY_PUBLIC).text == "ok"
    with pytest.raises(EgressDenied) as refused:
        egress.request("GET", url.format(port=other.port), policy=ANY_PUBLIC)
    assert str(refused.value) == (
        "The address internal.example.test resolves to 127.0.0.1, a loopback address; "
        f"connections may reach it only on port {allowed.port}, not on port {other.port}."
    )
    assert other.accepted == 0
    # As a form field is checked (resolving now), with the same words.
    with pytest.raises(EgressDenied, match=f"not on port {other.port}"):
        egress.check_url(url.format(port=other.port), ANY_PUBLIC, resolve=True)
    egress.check_url(url.format(port=allowed.port), ANY_PUBLIC, resolve=True)


def test_a_plain_network_still_opens_every_port(two_ports, settings):
    allowed, other = two_ports
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    for listener in (allowed, other):
        assert egress.request("GET", f"{listener.url}/", policy=ANY_PUBLIC).text == "ok"


def test_a_policy_network_may_name_ports_too(two_ports, settings):
    allowed, other = two_ports
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = []
    policy = EgressPolicy((), allowed_networks=(f"127.0.0.1:{allowed.port}",))
    assert egress.request("GET", f"{allowed.url}/", policy=policy).text == "ok"
    with pytest.raises(EgressDenied, match=f"only on port {allowed.port}, not on port"):
        egress.request("GET", f"{other.url}/", policy=policy)
    assert other.accepted == 0


def test_the_default_port_is_the_port_checked(settings):
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["10.20.0.5:443"]
    egress.check_url("https://10.20.0.5/api", ANY_PUBLIC)
    egress.check_url("https://10.20.0.5:443/api", ANY_PUBLIC)
    with pytest.raises(EgressDenied, match="only on port 443, not on port 80"):
        egress.check_url("http://10.20.0.5/api", ANY_PUBLIC)
    with pytest.raises(EgressDenied, match="only on port 443, not on port 5432"):
        egress.check_url("https://10.20.0.5:5432/", ANY_PUBLIC)


def test_ipv6_entries_with_ports(settings):
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["[fd00::/64]:443,8443"]
    egress.check_url("https://[fd00::1]/", ANY_PUBLIC)
    egress.check_url("https://[fd00::1]:8443/", ANY_PUBLIC)
    with pytest.raises(EgressDenied, match="only on ports 443 and 8443, not on port 5432"):
        egress.check_url("https://[fd00::1]:5432/", ANY_PUBLIC)
    # Outside the network, the port does not matter: refused as before.
    with pytest.raises(EgressDenied, match="may not reach it"):
        egress.check_url("https://[fd00:1::1]:443/", ANY_PUBLIC)


def test_ipv6_loopback_with_a_port_at_connect_time(settings):
    try:
        listener = RawListener(_ok, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with listener, RawListener(_ok, "::1") as other:
        settings.PORTAL_EGRESS_ALLOWED_NETWORKS = [f"[::1]:{listener.port}"]
        url = f"http://[::1]:{listener.port}/"
        assert egress.request("GET", url, policy=ANY_PUBLIC).text == "ok"
        with pytest.raises(EgressDenied, match=f"not on port {other.port}"):
            egress.request("GET", f"http://[::1]:{other.port}/", policy=ANY_PUBLIC)
        assert other.accepted == 0


def test_a_metadata_address_still_needs_its_own_entry(settings):
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["169.254.0.0/16:80"]
    with pytest.raises(EgressDenied, match="cloud metadata address; connections may not"):
        egress.check_address("169.254.169.254", port=80)
    egress.check_address("169.254.10.10", port=80)
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["169.254.169.254/32:80"]
    egress.check_address("169.254.169.254", port=80)
    with pytest.raises(EgressDenied, match="only on port 80, not on port 8080"):
        egress.check_address("169.254.169.254", port=8080)


def test_a_public_address_is_not_limited_by_an_entry_with_ports(settings):
    """Entries open addresses; they never close public ones over https."""
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["93.184.216.0/24:443"]
    egress.check_url("https://93.184.216.34:8443/", ANY_PUBLIC)
    egress.check_url("http://93.184.216.34:443/", ANY_PUBLIC)  # plain http: only there
    with pytest.raises(EgressDenied, match="plain http only on port 443, not on port 80"):
        egress.check_url("http://93.184.216.34/", ANY_PUBLIC)


# --- Start-up ------------------------------------------------------------------------

# Loads portal/settings.py (the operator's settings, not the suite's) once per
# value in one process and reports what came of each.
LOAD_SETTINGS = """
import json, os, runpy, sys
from django.core.exceptions import ImproperlyConfigured
results = []
for value in json.loads(sys.argv[1]):
    os.environ["PORTAL_EGRESS_ALLOWED_NETWORKS"] = value
    try:
        loaded = runpy.run_path("portal/settings.py")
    except ImproperlyConfigured as error:
        results.append(["refused", str(error)])
    else:
        results.append(["loaded", loaded["PORTAL_EGRESS_ALLOWED_NETWORKS"]])
print(json.dumps(results))
"""


def test_start_up_reads_the_setting_with_the_same_parser(tmp_path):
    from tests.portal.test_deploy_settings import production_env

    values = [
        "",
        "10.20.0.0/16,192.168.5.10",
        "10.20.0.5:443,8443,[fd00::/64]:443,10.30.0.0/16",
        "10.20.0.5:5432x",
        "10.0.0.0/8,443",
        "[10.0.0.5]:443",
        "internal.example.com",
    ]
    done = subprocess.run(  # noqa: S603 (our interpreter, fixed arguments)
        [sys.executable, "-c", LOAD_SETTINGS, json.dumps(values)],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results[:3] == [
        ["loaded", []],
        ["loaded", ["10.20.0.0/16", "192.168.5.10/32"]],
        ["loaded", ["10.20.0.5/32:443,8443", "[fd00::/64]:443", "10.30.0.0/16"]],
    ]
    refused = [message for outcome, message in results[3:] if outcome == "refused"]
    assert refused == [
        f"{SOURCE}: '5432x' in '10.20.0.5:5432x' is not a port (1 to 65535).",
        f"{SOURCE}: '443' is a port, but 10.0.0.0/8 before it names none (it is open on every "
        "port): write 10.0.0.0/8:443 to open only that port.",
        f"{SOURCE}: '[10.0.0.5]:443': brackets are for IPv6 only; write 10.0.0.5/32.",
        f"{SOURCE}: 'internal.example.com' is not a network. Write {egress.NETWORK_SYNTAX}.",
    ]


def test_the_allowed_port_is_checked_on_every_resolved_address(settings, dns):  # noqa: F811
    """A name with one address on an allowed port and one not: refused."""
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["10.20.0.5:443"]
    dns["mixed.example.test"] = ["10.20.0.5", "10.20.0.6"]
    with pytest.raises(EgressDenied, match=r"10\.20\.0\.6, a private network address"):
        egress.check_url("https://mixed.example.test/", ANY_PUBLIC, resolve=True)
    assert socket.getaddrinfo("mixed.example.test", 443)  # the table answered
