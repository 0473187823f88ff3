"""`make run` is the product: the settings under scripts/run.sh's environment
have debug off, relax only what a portal on http://127.0.0.1 needs, and pass
`check --deploy` but for exactly those relaxations. `make dev` (run.sh --dev)
turns debug on.

Each case runs `scripts/run.sh CMD` (run.sh's environment, then CMD instead of
the servers) in a subprocess, with a var/ directory of its own and nothing
inherited from the test run's settings.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
PORT = "8123"


def make_dev_env() -> str:
    return subprocess.run(
        [sys.executable, "scripts/make_dev_env.py"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def var_dir(tmp_path) -> Path:
    """A var/ as the Makefile leaves it before run.sh starts: dev.env only."""
    var = tmp_path / "var"
    var.mkdir()
    (var / "dev.env").write_text(make_dev_env())
    return var


def run_sh(var_dir: Path, *command: str, dev: bool = False, **environ: str):
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PORTAL_", "DJANGO_", "CELERY_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "PORT"}
    }
    env = {
        **inherited,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORT": PORT,
        "PYTHONDONTWRITEBYTECODE": "1",
        **environ,
    }
    args = ["bash", "scripts/run.sh", *(["--dev"] if dev else []), *command]
    return subprocess.run(  # noqa: S603 (our scripts and interpreter, fixed arguments)
        args, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


VALUES = """
import json
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "SECRET_KEY_FROM_DEV_ENV": s.SECRET_KEY.startswith("dev-"),
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "PORTAL_BASE_URL": s.PORTAL_BASE_URL,
    "CSRF_TRUSTED_ORIGINS": s.CSRF_TRUSTED_ORIGINS,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SESSION_COOKIE_HTTPONLY": s.SESSION_COOKIE_HTTPONLY,
    "X_FRAME_OPTIONS": s.X_FRAME_OPTIONS,
    "STATICFILES": s.STORAGES["staticfiles"]["BACKEND"],
    "EMAIL_BACKEND": s.EMAIL_BACKEND,
    "SANDBOX": s.PORTAL_SANDBOX_ENABLED,
    "SANDBOX_REDIRECT_SCHEMES": s.OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"],
    "DATABASE": s.DATABASES["default"]["ENGINE"],
    "BROKER": s.CELERY_BROKER_URL,
}))
"""


def settings_values(var_dir: Path, *, dev: bool = False, **environ: str) -> dict:
    result = run_sh(
        var_dir, sys.executable, "manage.py", "shell", "--no-startup", "-c", VALUES,
        dev=dev, **environ,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


MAKE_RUN = {
    "DEBUG": False,
    "SECRET_KEY_FROM_DEV_ENV": True,
    "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
    "PORTAL_BASE_URL": f"http://127.0.0.1:{PORT}",
    "CSRF_TRUSTED_ORIGINS": [f"http://127.0.0.1:{PORT}"],
    "SECURE_SSL_REDIRECT": False,
    "SESSION_COOKIE_SECURE": False,
    "CSRF_COOKIE_SECURE": False,
    "SECURE_HSTS_SECONDS": 0,
    "SESSION_COOKIE_HTTPONLY": True,
    "X_FRAME_OPTIONS": "DENY",
    "STATICFILES": "whitenoise.storage.CompressedManifestStaticFilesStorage",
    "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    "SANDBOX": True,
    "SANDBOX_REDIRECT_SCHEMES": ["http", "https"],
    "DATABASE": "django.db.backends.sqlite3",
    "BROKER": "filesystem://",
}


def test_make_dev_env_says_nothing_about_debug():
    written = make_dev_env()
    assert "PORTAL_DEBUG" not in written
    assert re.search(r"^PORTAL_SECRET_KEY=dev-\S{40,}$", written, re.M)
    assert re.search(r"^PORTAL_ENCRYPTION_KEYS=\S{44}$", written, re.M)


def test_make_run_is_the_product_with_debug_off(var_dir):
    assert settings_values(var_dir) == MAKE_RUN


@pytest.mark.parametrize(
    "how", ["a dev.env from before make dev existed", "the shell exports it", "both"]
)
def test_make_run_turns_debug_off_whatever_asks_for_it(var_dir, how):
    environ = {}
    if how != "the shell exports it":
        with (var_dir / "dev.env").open("a") as dev_env:
            dev_env.write("PORTAL_DEBUG=1\n")
    if how != "a dev.env from before make dev existed":
        environ["PORTAL_DEBUG"] = "1"
    assert settings_values(var_dir, **environ) == MAKE_RUN


def test_make_dev_turns_debug_on(var_dir):
    values = settings_values(var_dir, dev=True)
    assert values["DEBUG"] is True
    assert values["SECRET_KEY_FROM_DEV_ENV"] is True
    assert values["STATICFILES"] == "django.contrib.staticfiles.storage.StaticFilesStorage"
    assert values["PORTAL_BASE_URL"] == f"http://127.0.0.1:{PORT}"


def test_the_shell_may_still_override_a_local_value(var_dir):
    values = settings_values(var_dir, PORTAL_ALLOWED_HOSTS="portal.test")
    assert values["ALLOWED_HOSTS"] == ["portal.test"]
    assert values["DEBUG"] is False


def deploy_check_ids(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"^\?: \(([\w.]+)\)", result.stdout + result.stderr, re.M))


# What `check --deploy` is expected to say about make run, and why each is right
# for a portal on http://127.0.0.1 only: it has no TLS to redirect to, to mark
# cookies Secure for, to pin with HSTS, or to send the Sandbox's OAuth
# callbacks over.
PLAIN_HTTP_ONLY = {
    "security.W004",  # no HSTS
    "security.W008",  # no redirect to https
    "security.W012",  # session cookie not Secure
    "security.W016",  # CSRF cookie not Secure
    "oauth2_provider.W008",  # the Sandbox accepts http redirect URIs
}


def test_check_deploy_reports_only_the_plain_http_relaxations(var_dir):
    result = run_sh(var_dir, sys.executable, "manage.py", "check", "--deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    # In particular not debug on (W018), a weak key (W009) or open hosts (W020).
    assert deploy_check_ids(result) == PLAIN_HTTP_ONLY


def test_check_deploy_would_see_debug(var_dir):
    """The check above can fail: under make dev, debug on is reported."""
    result = run_sh(var_dir, sys.executable, "manage.py", "check", "--deploy", dev=True)
    assert "security.W018" in deploy_check_ids(result)


PAGES = """
from django.test import Client
client = Client(raise_request_exception=False)
for path, host in [("/no-such-page/", "127.0.0.1"), ("/", "evil.example")]:
    response = client.get(path, HTTP_HOST=host)
    body = response.content.decode()
    print("STATUS", path, response.status_code, "<title>Not found ·" in body, "/static/" in body)
"""


def test_a_404_before_collectstatic_is_the_portal_page_and_one_log_line(var_dir):
    """Under make run's settings, with static files never collected: the 404 is
    the portal's page (not Django's debug page, not a crash), and refusals are
    one line each on the console."""
    result = run_sh(var_dir, sys.executable, "manage.py", "shell", "--no-startup", "-c", PAGES)
    assert result.returncode == 0, result.stderr
    assert not (var_dir / "staticfiles" / "staticfiles.json").exists()
    assert "STATUS /no-such-page/ 404 True False" in result.stdout
    assert "STATUS / 400 False False" in result.stdout
    log = result.stderr
    assert "Traceback" not in log, log
    assert len(re.findall(r"WARNING django\.request Not Found: /no-such-page/$", log, re.M)) == 1
    assert len(re.findall(r"ERROR django\.security\.DisallowedHost Invalid HTTP_HOST", log)) == 1


def test_production_keeps_its_defaults_without_run_sh(tmp_path):
    """What run.sh relaxes stays strict where run.sh is not used."""
    from tests.portal.test_deploy_settings import production_env, run

    result = run(
        production_env(tmp_path, PORTAL_SANDBOX_ENABLED="1"),
        "manage.py", "shell", "--no-startup", "-c", VALUES,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SANDBOX_REDIRECT_SCHEMES"] == ["https"]
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
