"""A flow started on one web server process completes on another: the flow's
state lives in the database, not in a process. Two gunicorn processes share
the test database (PostgreSQL: SQLite's test database lives in memory)."""

import re
from html import unescape

import pytest
import requests

from connections.models import Connection
from connections.sandbox_provider import ensure_portal_app
from tests.factories import PASSWORD, assign
from tests.servers import free_port, needs_a_shared_database, servers

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

pytestmark = pytest.mark.django_db(transaction=True)


def _form(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.text[:2000]
    return page.text


@pytest.mark.timeout(120)
def test_flow_started_on_one_process_completes_on_another(make_user, tree, settings):
    needs_a_shared_database()
    ports = [free_port(), free_port()]
    base_a = f"http://localhost:{ports[0]}"
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = base_a
    ensure_portal_app()
    user = make_user("ada")
    assign(user, tree["finance"], "Automation Developer")
    env = {"PORTAL_BASE_URL": base_a, "PORTAL_SANDBOX_ENABLED": "1"}
    with servers(ports, env=env) as (base_a, base_b):
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
