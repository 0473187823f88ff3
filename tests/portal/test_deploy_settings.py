"""Production settings: with PORTAL_DEBUG off and production values,
``manage.py check --deploy`` reports nothing; without the values production
needs, start-up stops with a message naming the variable.

Each case runs in a subprocess with a clean environment (``portal.settings``,
not the test settings), the way an operator starts the portal.
"""

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def production_env(tmp_path, **overrides) -> dict[str, str]:
    """The process environment minus anything the test run set (PORTAL_*,
    DATABASE_URL, REDIS_URL, ...), plus production values."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PORTAL_", "DJANGO_", "CELERY_"))
        and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env = {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_DEBUG": "0",
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(50),
        "PORTAL_ALLOWED_HOSTS": "portal.example.com",
        "PORTAL_BASE_URL": "https://portal.example.com",
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "PORTAL_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 (our interpreter, fixed arguments)
        [sys.executable, *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check_deploy(env) -> subprocess.CompletedProcess:
    return run(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")


def test_check_deploy_reports_nothing_with_production_values(tmp_path):
    result = check_deploy(production_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNINGS" not in output
    assert "?: (security." not in output


def test_check_deploy_reports_nothing_behind_a_trusted_proxy(tmp_path):
    result = check_deploy(production_env(tmp_path, PORTAL_TRUSTED_PROXY_COUNT="1"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_fails_on_a_weak_secret_key(tmp_path):
    """The check above can fail: a short key is reported and the exit code says so."""
    result = check_deploy(production_env(tmp_path, PORTAL_SECRET_KEY="short"))
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


PRODUCTION_VALUES = """
import json
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "SESSION_COOKIE_HTTPONLY": s.SESSION_COOKIE_HTTPONLY,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SECURE_CONTENT_TYPE_NOSNIFF": s.SECURE_CONTENT_TYPE_NOSNIFF,
    "X_FRAME_OPTIONS": s.X_FRAME_OPTIONS,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "CSRF_TRUSTED_ORIGINS": s.CSRF_TRUSTED_ORIGINS,
    "EMAIL_BACKEND": s.EMAIL_BACKEND,
    "PROXY_SSL_HEADER": s.SECURE_PROXY_SSL_HEADER,
    "TRUSTED_PROXIES": s.PORTAL_TRUSTED_PROXY_COUNT,
    "OPEN_SIGNUP": s.PORTAL_OPEN_SIGNUP,
    "AXES_ENABLED": getattr(s, "AXES_ENABLED", True),
}))
"""


def production_values(env) -> dict:
    result = run(env, "manage.py", "shell", "--no-startup", "-c", PRODUCTION_VALUES)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_defaults_are_the_safe_ones(tmp_path):
    values = production_values(production_env(tmp_path))
    assert values == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "ALLOWED_HOSTS": ["portal.example.com"],
        "CSRF_TRUSTED_ORIGINS": ["https://portal.example.com"],
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        # X-Forwarded-Proto is trusted only when a proxy is declared.
        "PROXY_SSL_HEADER": None,
        "TRUSTED_PROXIES": 0,
        "OPEN_SIGNUP": False,
        "AXES_ENABLED": True,
    }


def test_debug_is_off_unless_asked_for(tmp_path):
    values = production_values(production_env(tmp_path, PORTAL_DEBUG=None))
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True


def test_proxy_ssl_header_only_with_a_trusted_proxy(tmp_path):
    values = production_values(production_env(tmp_path, PORTAL_TRUSTED_PROXY_COUNT="1"))
    assert values["PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["TRUSTED_PROXIES"] == 1


@pytest.mark.parametrize("debug", ["0", None])
def test_start_up_fails_without_a_secret_key(tmp_path, debug):
    env = production_env(tmp_path, PORTAL_DEBUG=debug, PORTAL_SECRET_KEY=None)
    result = check_deploy(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "PORTAL_SECRET_KEY" in result.stderr
    # Not the default key quietly used instead.
    assert "django-insecure" not in result.stdout


def test_start_up_fails_with_an_empty_secret_key(tmp_path):
    result = check_deploy(production_env(tmp_path, PORTAL_SECRET_KEY=""))
    assert result.returncode != 0
    assert "PORTAL_SECRET_KEY" in result.stderr


def test_start_up_fails_without_allowed_hosts(tmp_path):
    result = check_deploy(production_env(tmp_path, PORTAL_ALLOWED_HOSTS=None))
    assert result.returncode != 0
    assert "PORTAL_ALLOWED_HOSTS" in result.stderr


def test_wsgi_application_refuses_to_load_without_a_secret_key(tmp_path):
    """gunicorn runs no system checks: the import itself must fail."""
    env = production_env(tmp_path, PORTAL_SECRET_KEY=None)
    result = run(env, "-c", "import portal.wsgi")
    assert result.returncode != 0
    assert "PORTAL_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("name", ["PORTAL_API_RATE_LIMIT", "PORTAL_API_REFUSED_RATE_LIMIT"])
def test_a_rate_limit_that_is_not_a_rate_stops_start_up(tmp_path, name):
    result = run(production_env(tmp_path, **{name: "30 per minute"}), "manage.py", "check")
    assert result.returncode != 0
    assert f"{name} is '30 per minute': write requests per window" in result.stderr
    assert run(production_env(tmp_path, **{name: "100/5m"}), "manage.py", "check").returncode == 0
