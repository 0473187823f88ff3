import pytest
import requests

from connections import sandbox
from connections.catalog import get_catalog
from connections.triggers import configure, processes
from tests.connections.triggers.receiver import Receiver
from tests.factories import ConnectionFactory, FolderFactory


@pytest.fixture
def sandbox_api(live_server, settings):
    """The Sandbox API served over HTTP by the live server, as the
    connection's provider; webhooks may go to loopback (the receiver)."""
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    get_catalog.cache_clear()
    yield live_server
    get_catalog.cache_clear()


@pytest.fixture
def ada(make_user):
    return make_user("ada")


@pytest.fixture
def token(ada):
    return sandbox.issue_token(user=ada, name="triggers")[1]


@pytest.fixture
def folder(db):
    return FolderFactory(name="Finance")


@pytest.fixture
def connection(sandbox_api, folder, token):
    return ConnectionFactory(folder=folder, sandbox=True, name="Records", secret={"token": token})


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def process(folder, receiver):
    made = processes.create_process(folder=folder, name="Book invoices", webhook_url=receiver.url)
    receiver.secret = made.signing_secret
    return made.process


@pytest.fixture
def make_trigger(connection, process):
    def make(**options):
        return configure.create_trigger(
            connection=connection,
            event_key="record_created",
            filters=options.pop("filters", {}),
            process=process,
            **options,
        )

    return make


@pytest.fixture
def add_record(sandbox_api, token):
    """A record made through the Sandbox API over HTTP, as a user's app would."""

    def add(title: str) -> dict:
        answer = requests.post(
            f"{sandbox_api.url}/sandbox/api/records",
            json={"title": title},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        return answer.json()

    return add
