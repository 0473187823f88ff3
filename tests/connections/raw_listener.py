"""A raw TCP listener for tests of network failures.

The listener reads each request (``read_first``; off for behaviours that
speak TLS first) and hands the connection to a behaviour, a function of the
connection's socket and the listener's ``stop`` event, which writes whatever
bytes (or abuse) the test needs: half an answer, garbage, a reset, an answer
that never ends. Behaviours that never finish by themselves return when
``stop`` is set, which leaving the ``with`` block does.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable

Behaviour = Callable[[socket.socket, threading.Event], None]


class RawListener:
    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1", *, read_first: bool = True):
        self.behaviour = behaviour
        self.read_first = read_first
        self.stop = threading.Event()
        self.accepted = 0
        self.requests: list[bytes] = []
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RawListener:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.read_first:
                self.requests.append(read_request(conn))
            self.behaviour(conn, self.stop)
        except (OSError, ssl.SSLError):
            pass  # the client went away: what many of these tests expect
        finally:
            conn.close()


def read_request(conn: socket.socket) -> bytes:
    """The whole request, head and body (by its Content-Length): a socket
    closed with unread data sends a reset instead of a clean close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a clean close (FIN)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def trickle(conn: socket.socket, stop: threading.Event, data: bytes, interval: float) -> None:
    """Send ``data`` one byte at a time, ``interval`` seconds apart, until it
    is all sent or ``stop`` is set."""
    for i in range(len(data)):
        if stop.wait(interval):
            return
        conn.sendall(data[i : i + 1])
