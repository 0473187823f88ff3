"""portal-cli against a live portal: pytest-django's live server, a robot
with an API key made by ``portal.api_keys``, and FakeHub connections whose
health check calls the fake provider on loopback. Commands run in-process
through typer's test runner, with PORTAL_URL / PORTAL_API_KEY set and a
config directory of the test's own."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from connections.catalog import get_catalog
from portal import api_keys
from portal.cli.commands import app
from tests.connections.fake_provider import DEFINITION, GOOD_TOKEN, FakeProvider
from tests.factories import ConnectionFactory, assign


@pytest.fixture
def provider():
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def portal(live_server, provider, tmp_path, settings):
    """The live portal, with FakeHub pointing at the fake provider."""
    folder = tmp_path / "connectors"
    folder.mkdir()
    (folder / "fakehub.yaml").write_text(DEFINITION.format(base=provider.url))
    settings.PORTAL_CONNECTORS_DIRS = [str(folder)]
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    settings.PORTAL_BASE_URL = live_server.url
    get_catalog.cache_clear()
    yield live_server
    get_catalog.cache_clear()


@pytest.fixture
def robot(tree, tenant_admin):
    """ci-bot, an Automation Developer on Finance (and so on Payables)."""
    made = api_keys.create_robot(name="ci-bot", description="CI", actor=tenant_admin)
    assign(made.user, tree["finance"], "Automation Developer")
    return made.user


@pytest.fixture
def raw_key(robot, tenant_admin) -> str:
    return api_keys.issue(owner=robot, name="cli tests", actor=tenant_admin).raw


@pytest.fixture
def connections(portal, tree):
    """Finance/Robot (healthy), Finance/Broken (a token the provider refuses),
    and Payables/Robot (the same name in another folder)."""
    return {
        "robot": ConnectionFactory(
            folder=tree["finance"],
            name="Robot",
            secret={"token": GOOD_TOKEN},
            account_identity="octo-robot",
        ),
        "broken": ConnectionFactory(
            folder=tree["finance"], name="Broken", secret={"token": "ghp_refused_by_provider"}
        ),
        "payables": ConnectionFactory(
            folder=tree["payables"], name="Robot", secret={"token": GOOD_TOKEN}
        ),
    }


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """A config directory (and HOME) of the test's own."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("PORTAL_URL", raising=False)
    monkeypatch.delenv("PORTAL_API_KEY", raising=False)
    return home / ".config"


@pytest.fixture
def run(config_home):
    """``run(*args, url=…, key=…, input=…)``: portal-cli in-process."""

    def invoke(*args: str, url: str | None = None, key: str | None = None, input=None) -> Ran:
        env = {}
        if url is not None:
            env["PORTAL_URL"] = url
        if key is not None:
            env["PORTAL_API_KEY"] = key
        result = CliRunner().invoke(app, list(args), env=env, input=input)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def cli(run, portal, raw_key):
    """portal-cli signed in as the robot, through the environment."""

    def invoke(*args: str, **kwargs) -> Ran:
        return run(*args, url=portal.url, key=raw_key, **kwargs)

    return invoke


def one_line_error(ran: Ran, code: int) -> str:
    """The run failed with ``code``, saying why in one line of stderr, no traceback."""
    assert ran.exit_code == code, (ran.exit_code, ran.stdout, ran.stderr)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout
    assert lines[0].startswith("portal-cli: error: ")
    return lines[0]
