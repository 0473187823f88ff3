"""The portal served by separate gunicorn processes on the test database, for
what must hold across processes (a flow begun on one and finished on
another, refreshes asked of several at once). Both need a database every
process can open: PostgreSQL (SQLite's test database lives in memory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.db import connection as db

ROOT = Path(__file__).resolve().parents[1]


def needs_a_shared_database() -> None:
    if db.vendor != "postgresql":
        pytest.skip("needs a database both processes can open: CI runs it on PostgreSQL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    s = db.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


def serve(
    port: int, *, env: dict[str, str], threads: int = 1, config: str | None = None
) -> subprocess.Popen:
    """One gunicorn process (``threads`` request threads) on the test database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PORTAL_ALLOWED_HOSTS": "localhost,127.0.0.1",
        **env,
    }
    command = [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}"]
    command += ["-w", "1", "--threads", str(threads)]
    if config:
        command += ["-c", config]
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode()[-3000:])
        try:
            requests.get(url + "/healthz", timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            # Not listening yet, or still loading the portal on a busy machine.
            time.sleep(0.2)
    raise AssertionError(f"{url} did not start")


@contextmanager
def servers(ports: list[int], *, env: dict[str, str], **options) -> Iterator[list[str]]:
    """A gunicorn process on each port (``free_port()``): their base URLs,
    once every one answers."""
    processes = [serve(port, env=env, **options) for port in ports]
    urls = [f"http://localhost:{port}" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            wait_until_up(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
