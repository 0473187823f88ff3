"""The installed ``portal-cli`` console script, run as a process: JSON on
stdout, exit codes, and errors in one line with no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("portal-cli")


@pytest.fixture
def script(portal, raw_key, config_home):
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: pip install -e . installs it")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        environment = {
            **os.environ,
            "PORTAL_URL": portal.url,
            "PORTAL_API_KEY": raw_key,
            **env,
        }
        return subprocess.run(  # noqa: S603 (our own script, fixed arguments)
            [str(SCRIPT), *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def test_the_console_script_lists_checks_and_fails_cleanly(script, connections):
    listed = script("connections", "Shared/Finance", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(c["name"] for c in json.loads(listed.stdout)) == ["Broken", "Robot"]

    assert script("check", "Finance/Robot").returncode == 0
    assert script("check", "Finance/Broken").returncode == 5
    assert script("show", "Robot").returncode == 2  # in Finance and in Payables

    for args, env, code in [
        (("show", "999999"), {}, 3),
        (("folders",), {"PORTAL_API_KEY": "cpk_nope"}, 4),
        (("folders",), {"PORTAL_URL": "http://127.0.0.1:9"}, 1),
        (("folders", "--nope"), {}, 2),
    ]:
        failed = script(*args, **env)
        assert failed.returncode == code, (args, failed.stderr)
        assert "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert failed.stderr.startswith("portal-cli: error: ")
