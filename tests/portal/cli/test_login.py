"""portal-cli login: the key is asked for (hidden), checked against the
portal, and kept with the address in the user's config directory, readable
by the owner only; the environment overrides it."""

from __future__ import annotations

import json
import stat

from portal.cli import config
from tests.portal.cli.conftest import one_line_error


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_keeps_the_address_and_key_owner_only(run, portal, raw_key, connections, config_home):
    ran = run("login", "--url", portal.url + "/", input=raw_key + "\n")
    assert ran.exit_code == 0, ran.stderr
    assert "Signed in to " + portal.url + " as ci-bot (robot)" in ran.stdout
    assert raw_key not in ran.stdout + ran.stderr  # the prompt does not echo it

    saved = config_home / "portal-cli" / "config.json"
    assert config.config_path() == saved
    assert mode(saved) == 0o600
    assert mode(saved.parent) == 0o700
    assert json.loads(saved.read_text()) == {"url": portal.url, "api_key": raw_key}

    # Later commands use it, with nothing in the environment.
    listed = run("connections", "Finance", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert len(listed.json()) == 2


def test_login_again_keeps_the_file_owner_only(run, portal, raw_key, config_home):
    saved = config_home / "portal-cli" / "config.json"
    saved.parent.mkdir(parents=True)
    saved.write_text("{}")
    saved.chmod(0o644)
    assert run("login", "--url", portal.url, input=raw_key + "\n").exit_code == 0
    assert mode(saved) == 0o600
    assert json.loads(saved.read_text())["api_key"] == raw_key


def test_a_refused_key_is_not_kept(run, portal, config_home, db):
    ran = run("login", "--url", portal.url, input="cpk_wrong\n")
    message = one_line_error(ran, 4)
    assert "refused this key: This API key is not valid." in message
    assert not (config_home / "portal-cli" / "config.json").exists()


def test_login_to_nothing_is_one_line(run, config_home):
    one_line_error(run("login", "--url", "http://127.0.0.1:9", input="cpk_x\n"), 1)
    one_line_error(run("login", "--url", "not a url", input="cpk_x\n"), 2)
    one_line_error(run("login"), 2)  # no --url, no PORTAL_URL
    assert not (config_home / "portal-cli").exists()


def test_the_environment_overrides_the_saved_config(run, portal, raw_key, connections):
    assert run("login", "--url", portal.url, input=raw_key + "\n").exit_code == 0
    refused = run("folders", key="cpk_from_the_environment")
    one_line_error(refused, 4)
    unreachable = run("folders", url="http://127.0.0.1:9")
    assert "Cannot reach http://127.0.0.1:9" in one_line_error(unreachable, 1)


def test_logout_forgets(run, portal, raw_key, config_home):
    assert run("login", "--url", portal.url, input=raw_key + "\n").exit_code == 0
    assert run("logout").exit_code == 0
    assert not (config_home / "portal-cli" / "config.json").exists()
    one_line_error(run("folders"), 4)
