"""A flow started on one web server process completes on another: the flow's
state lives in the database, not in a process. Two gunicorn processes share
the test database (PostgreSQL: SQLite's test database lives in memory)."""

import os
import re
import socket
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import pytest
import requests
from django.db import connection as db

from connections.models import Connection
from connections.sandbox_provider import ensure_portal_app
from tests.factories import PASSWORD, assign

ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    s = db.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


def _serve(port: int, base_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "PORTAL_BASE_URL": base_url,
        "PORTAL_SANDBOX_ENABLED": "1",
        "PORTAL_ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode()[-3000:])
        try:
            requests.get(url + "/accounts/login/", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not start")


def _form(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.text[:2000]
    return page.text


@pytest.mark.timeout(120)
def test_flow_started_on_one_process_completes_on_another(make_user, tree, settings):
    if db.vendor != "postgresql":
        pytest.skip("needs a database both processes can open: CI runs it on PostgreSQL")
    port_a, port_b = _free_port(), _free_port()
    base_a, base_b = f"http://localhost:{port_a}", f"http://localhost:{port_b}"
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = base_a
    ensure_portal_app()
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    servers = [_serve(port_a, base_a), _serve(port_b, base_a)]
    try:
        _wait(base_a, servers[0])
        _wait(base_b, servers[1])
        browser = requests.Session()
        login = _form(browser, base_a + "/accounts/login/")
        signed_in = browser.post(
            base_a + "/accounts/login/",
            data={
                "csrfmiddlewaretoken": CSRF.search(login).group(1),
                "login": "ada",
                "password": PASSWORD,
            },
            allow_redirects=False,
        )
        assert signed_in.status_code == 302

        # Process A: the wizard starts the flow ...
        folder = tree["finance"].pk
        details = f"{base_a}/folders/{folder}/connections/add/sandbox/oauth2_authorization_code/"
        form = _form(browser, details)
        started = browser.post(
            details,
            data={"csrfmiddlewaretoken": CSRF.search(form).group(1), "name": "Across"},
        )
        authorize = unescape(
            re.search(r'href="([^"]+)" data-testid="continue"', started.text).group(1)
        )
        consent = _form(browser, authorize)
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent))
        back = browser.post(authorize, data={**hidden, "allow": "Authorize"}, allow_redirects=False)
        assert back.status_code == 302 and "/oauth/callback/?" in back.headers["Location"]

        # ... process B receives the provider's answer and finishes it.
        callback = back.headers["Location"].replace(base_a, base_b)
        done = browser.get(callback, allow_redirects=False)
        assert done.status_code == 302, done.text[:2000]
        connection = Connection.objects.get()
        assert connection.account_identity == "ada"
        assert connection.name == "Across"
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
