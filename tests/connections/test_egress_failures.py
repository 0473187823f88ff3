"""Every network failure is a typed failure explained in plain words.

A raw TCP listener (tests/connections/raw_listener.py) plays a provider that
fails in one way: it resets the connection, closes it half-way, answers with
garbage, never stops answering, lies about the length of its answer, or
trickles it one byte at a time. For each way the one HTTP client raises an
``EgressError`` whose message names the host only (never the path, query or
credentials); a health check records that message as a failed check (a
transient failure: the connection counts towards Degraded, it does not need
reconnecting); and a token refresh through the runtime API answers 503 with a
Retry-After header, never a 500, and leaves the connection as it was.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from connections import egress, vault
from connections.actions import check
from connections.catalog import get_catalog
from connections.egress import EgressError, EgressPolicy
from connections.models import ConnectionEvent, ConnectionState, HealthCheck
from portal import api_keys
from tests.connections.raw_listener import RawListener, read_request, reset, trickle

# A throwaway CA and a certificate for secure.test; names mapped to addresses.
from tests.connections.test_egress import dns, tls_files  # noqa: F401
from tests.factories import ConnectionFactory, assign

HOST = "127.0.0.1"
SECRET = "query-secret-value"
READ_TIMEOUT = 0.3  # seconds; every trickled byte comes well within it
TOTAL_TIMEOUT = 0.6  # seconds for a whole call, in the cases that reach it
ROOMY_TOTAL_TIMEOUT = 5  # in the others: whatever ends them, it is not the deadline
TRICKLE = 0.02  # seconds between two bytes of a slow answer
MAX_BYTES = 64 * 1024

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
BODY = b'{"login": "ada", "access_token": "t", "token_type": "Bearer"}'
ENOUGH = int(5 / TRICKLE)  # bytes a slow answer trickles: ~5 s, then it stops


# --- How the listener fails ------------------------------------------------------


def _reset(conn, stop):
    reset(conn)


def _close_mid_headers(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: applica")


def _close_mid_body(conn, stop):
    conn.sendall(HEAD + b"Content-Length: 1000\r\n\r\n" + BODY)


def _garbage(conn, stop):
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe\x01garbage\r\n\r\n")


def _unending(conn, stop):
    # Read until the connection closes (no length): 64 MiB, which is endless
    # for a client that stops at 64 KiB.
    conn.sendall(HEAD + b"\r\n")
    for _ in range(64 * 64):
        if stop.is_set():
            return
        conn.sendall(b" " * 16384)


def _unending_chunks(conn, stop):
    conn.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    for _ in range(64 * 64):
        if stop.is_set():
            return
        conn.sendall(chunk)


def _announced_too_large(conn, stop):
    conn.sendall(HEAD + b"Content-Length: 10000000000\r\n\r\n" + BODY)
    stop.wait(5)


def _more_than_promised(conn, stop):
    # The bytes after the promised length would read as a second answer.
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    conn.sendall(HEAD + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY + smuggled)
    stop.wait(5)


def _fewer_than_promised(conn, stop):
    # Less than promised, and the connection stays open: the client waits.
    conn.sendall(HEAD + f"Content-Length: {len(BODY) + 100}\r\n\r\n".encode() + BODY)
    stop.wait(5)


def _slow_headers(conn, stop):
    trickle(conn, stop, (b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * ENOUGH)[:ENOUGH], TRICKLE)


def _slow_body(conn, stop):
    conn.sendall(HEAD + b"Content-Length: 1000\r\n\r\n")
    trickle(conn, stop, b" " * ENOUGH, TRICKLE)


CUT_OFF = f"{HOST} closed the connection before its answer was complete."
TOO_LARGE = f"{HOST} sent an answer larger than 64 KiB; the portal stops reading there."
TOO_SLOW = f"Could not reach {HOST}: no complete answer within {TOTAL_TIMEOUT:g} s."

# kind: (behaviour, message, reason)
FAILURES = {
    "reset": (
        _reset,
        f"{HOST} reset the connection before its answer was complete.",
        "reset",
    ),
    "close-mid-headers": (_close_mid_headers, CUT_OFF, "closed"),
    "close-mid-body": (_close_mid_body, CUT_OFF, "closed"),
    "garbage": (
        _garbage,
        f"{HOST} answered with something that is not valid HTTP.",
        "protocol",
    ),
    "unending-body": (_unending, TOO_LARGE, "too-large"),
    "unending-chunked-body": (_unending_chunks, TOO_LARGE, "too-large"),
    "announced-too-large": (_announced_too_large, TOO_LARGE, "too-large"),
    "more-than-promised": (
        _more_than_promised,
        f"{HOST} sent more than the length it announced (Content-Length).",
        "protocol",
    ),
    "fewer-than-promised": (
        _fewer_than_promised,
        f"{HOST} stopped sending for {READ_TIMEOUT:g} s before its answer was complete.",
        "read-timeout",
    ),
    "slow-headers": (_slow_headers, TOO_SLOW, "deadline"),
    "slow-body": (_slow_body, TOO_SLOW, "deadline"),
}
KINDS = list(FAILURES)
# The slow kinds end at the total deadline, the others well before it.
SLOW = {"slow-headers", "slow-body"}


@pytest.fixture
def limits(settings):
    settings.PORTAL_HTTP_CONNECT_TIMEOUT = 2  # (a TLS handshake's own time limit)
    settings.PORTAL_HTTP_READ_TIMEOUT = READ_TIMEOUT
    settings.PORTAL_HTTP_TOTAL_TIMEOUT = TOTAL_TIMEOUT
    settings.PORTAL_HTTP_MAX_RESPONSE_BYTES = MAX_BYTES
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    return settings


@pytest.fixture(params=KINDS)
def failing(request, limits):
    """(listener, expected message, expected reason) for one failure kind."""
    behaviour, message, reason = FAILURES[request.param]
    if request.param not in SLOW:
        limits.PORTAL_HTTP_TOTAL_TIMEOUT = ROOMY_TOTAL_TIMEOUT
    with RawListener(behaviour, HOST) as listener:
        listener.kind = request.param
        yield listener, message, reason


def _timed(kind: str, started: float) -> None:
    elapsed = time.monotonic() - started
    if kind in SLOW:
        # Well before the slow answer would end by itself (at ~5 s).
        assert TOTAL_TIMEOUT - 0.1 <= elapsed < TOTAL_TIMEOUT + 1.5, elapsed
    else:
        assert elapsed < ROOMY_TOTAL_TIMEOUT / 2, elapsed


# --- (a) The client ---------------------------------------------------------------


def test_the_client_raises_a_plain_egress_error(failing):
    listener, message, reason = failing
    started = time.monotonic()
    with pytest.raises(EgressError) as failed:
        egress.request(
            "GET",
            f"{listener.url}/v1/private/path?token={SECRET}",
            policy=EgressPolicy((), allowed_networks=(f"{HOST}/32",)),
            headers={"Authorization": f"Bearer {SECRET}"},
        )
    _timed(listener.kind, started)
    assert str(failed.value) == message
    assert failed.value.reason == reason
    assert failed.value.host == HOST
    # Not chained: urllib3's words would carry the path and query string.
    assert failed.value.__cause__ is None
    assert failed.value.__context__ is None or failed.value.__suppress_context__
    assert SECRET not in str(failed.value) and "/v1" not in str(failed.value)
    assert listener.accepted == 1  # not retried
    # The request's deadline watchdog stopped with it.
    assert not [t for t in threading.enumerate() if t.name == "egress-deadline"]


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind not in SLOW])
def test_a_session_survives_a_failure(kind, limits):
    """After a failure the session's next call works on a new connection:
    nothing of the broken answer is read as the next one."""
    limits.PORTAL_HTTP_TOTAL_TIMEOUT = ROOMY_TOTAL_TIMEOUT
    policy = EgressPolicy((), allowed_networks=(f"{HOST}/32",))
    failing, ok = RawListener(FAILURES[kind][0], HOST), RawListener(_answer_ok, HOST)
    with failing, ok, egress.session(policy) as session:
        with pytest.raises(EgressError):
            session.get(f"{failing.url}/first")
        assert session.get(f"{ok.url}/second").json() == {"ok": True}


def _answer_ok(conn, stop):
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"ok": true}')


def test_a_caller_that_streams_reads_the_body_itself(limits):
    """stream=True: the caller reads the body (the size cap is for answers
    the client reads); the total deadline still bounds the wait for the head."""
    with RawListener(_unending, HOST) as listener:
        response = egress.request(
            "GET",
            f"{listener.url}/",
            policy=EgressPolicy((), allowed_networks=(f"{HOST}/32",)),
            stream=True,
        )
        assert len(response.raw.read(MAX_BYTES * 2)) == MAX_BYTES * 2
        response.close()
    with (
        RawListener(_slow_headers, HOST) as listener,
        pytest.raises(EgressError, match="no complete answer within"),
    ):
        egress.request(
            "GET",
            f"{listener.url}/",
            policy=EgressPolicy((), allowed_networks=(f"{HOST}/32",)),
            stream=True,
        )


def test_a_good_answer_within_the_limits_is_read(limits):
    body = b'{"items": "' + b"x" * (MAX_BYTES - 20) + b'"}'

    def answer(conn, stop):
        conn.sendall(HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    with RawListener(answer, HOST) as listener:
        response = egress.request(
            "GET", listener.url, policy=EgressPolicy((), allowed_networks=(f"{HOST}/32",))
        )
    assert response.status_code == 200
    assert response.content == body


@pytest.fixture
def tls_context(tls_files, dns):  # noqa: F811
    dns["secure.test"] = HOST
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    return context


def _tls_slow_handshake(context):
    def behaviour(conn, stop):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        while not stop.is_set():
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                pass
            trickle(conn, stop, outgoing.read(), TRICKLE)
            data = conn.recv(65536)
            if not data:
                return
            incoming.write(data)

    return behaviour


def _tls_slow_headers(context):
    def behaviour(conn, stop):
        tls = context.wrap_socket(conn, server_side=True)
        read_request(tls)
        _slow_headers(tls, stop)

    return behaviour


@pytest.mark.parametrize("slow", [_tls_slow_handshake, _tls_slow_headers])
def test_the_deadline_holds_over_tls(slow, tls_context, tls_files, limits):  # noqa: F811
    """The watchdog ends a call whatever TLS wraps the socket, during the
    handshake (the server's handshake trickled) as after it."""
    with RawListener(slow(tls_context), HOST, read_first=False) as listener:
        started = time.monotonic()
        with pytest.raises(EgressError) as failed:
            egress.request(
                "GET",
                f"https://secure.test:{listener.port}/",
                policy=EgressPolicy(("secure.test",), allowed_networks=(f"{HOST}/32",)),
                verify=tls_files["ca"],
            )
        _timed("slow-headers", started)
    assert str(failed.value) == (
        f"Could not reach secure.test: no complete answer within {TOTAL_TIMEOUT:g} s."
    )
    assert failed.value.reason == "deadline"


# --- (b) A health check ------------------------------------------------------------


def test_a_health_check_records_the_failure(failing, tree, settings):
    listener, message, _ = failing
    settings.PORTAL_HEALTH_DEGRADED_AFTER = 1
    connection = ConnectionFactory(
        folder=tree["finance"],
        connector_key="generic_http",
        name="Internal API",
        fields={"base_url": f"{listener.url}/v1", "check_path": f"/me?token={SECRET}"},
        secret={"token": SECRET},
    )
    started = time.monotonic()
    result = check.check_connection(connection=connection)
    _timed(listener.kind, started)
    assert not result.ok
    assert result.error == message
    recorded = HealthCheck.objects.get(connection=connection)
    assert (recorded.ok, recorded.error, recorded.status_code) == (False, message, None)
    connection.refresh_from_db()
    # A transient failure: it counts towards Degraded (here after one), and
    # the credential is not blamed.
    assert connection.consecutive_failures == 1
    assert connection.state == ConnectionState.DEGRADED
    assert connection.last_error == message


# --- (c) A token refresh through the runtime API -------------------------------------


@pytest.fixture
def sandbox_at(settings):
    """The Sandbox connector, its token endpoint at the listener."""

    def point(listener: RawListener) -> None:
        settings.PORTAL_SANDBOX_ENABLED = True
        settings.PORTAL_BASE_URL = listener.url
        get_catalog.cache_clear()
        get_catalog()  # loaded here, not in the timed call

    yield point
    get_catalog.cache_clear()


def test_a_refresh_through_the_failure_is_transient(failing, tree, make_user, sandbox_at):
    listener, message, _ = failing
    sandbox_at(listener)
    user = make_user("dev")
    assign(user, tree["finance"], "Automation Developer")
    expired = timezone.now() - timedelta(minutes=1)
    secret = {
        "access_token": "old-access-token",
        "refresh_token": "the-refresh-token",
        "token_type": "Bearer",
        "expires_at": int(expired.timestamp()),
        "client_id": "client-id",
        "client_secret": "client-secret-value",
    }
    connection = ConnectionFactory(
        folder=tree["finance"],
        sandbox=True,
        auth_type="oauth2_authorization_code",
        name="Sandbox",
        own_app=True,
        token_expires_at=expired,
        secret=secret,
    )
    key = api_keys.issue(owner=user, name="robot", actor=user)
    client = Client(headers={"Authorization": f"Bearer {key.raw}"})
    # The first API call of a process imports and builds the API: not timed.
    assert client.get("/api/v1/connections/0/credentials").status_code == 404

    started = time.monotonic()
    response = client.get(f"/api/v1/connections/{connection.pk}/credentials")
    _timed(listener.kind, started)

    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) >= 1
    assert response.json() == {
        "detail": f"The access token could not be refreshed now; try again. {message}"
    }
    assert listener.requests and b"POST /sandbox/oauth/token/ " in listener.requests[0]
    connection.refresh_from_db()
    assert connection.state == ConnectionState.CONNECTED
    assert vault.read_secret(connection) == secret
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.kind == ConnectionEvent.Kind.REFRESH_FAILED
    assert event.detail == f"Will try again: {message}"


# --- The listener itself ------------------------------------------------------------


def test_the_reset_behaviour_really_resets():
    """The reset case tests what it says: the client sees ECONNRESET."""
    with RawListener(_reset, HOST) as listener:
        sock = socket.create_connection((HOST, listener.port), timeout=2)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1024):
                pass
        sock.close()
