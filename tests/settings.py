"""Test settings: production-like (PORTAL_DEBUG off), fast hashing, no HTTPS redirect."""

import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("PORTAL_SECRET_KEY", "test-secret-key-" + "x" * 50)
os.environ.setdefault("PORTAL_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("PORTAL_SSL_REDIRECT", "false")
os.environ.setdefault("PORTAL_SECURE_COOKIES", "false")
os.environ.setdefault("PORTAL_HSTS_SECONDS", "0")
os.environ.setdefault("PORTAL_BASE_URL", "http://testserver")
os.environ.setdefault("PORTAL_VAR_DIR", tempfile.mkdtemp(prefix="portal-test-var-"))
os.environ.setdefault("PORTAL_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
# A fixed vault key for the suite (tests that rotate keys set their own).
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "dGVzdC1vbmx5LXZhdWx0LWtleS0zMi1ieXRlcy1vayE=")
# One database alias: a test may query only the aliases it names, and the
# asynchronous audit connection (portal/settings.py) would be a second one.
# tests/portal/test_audit_commit.py proves that connection in a process of its own.
os.environ.setdefault("PORTAL_AUDIT_SYNCHRONOUS", "1")

# Parallel runs (pytest-xdist, scripts/test.sh): each worker process has its
# own test database (pytest-django adds the worker's suffix) and its own Redis
# database, so that one worker's cache keys, broker queue and Celery workers
# never meet another's.
# Once: the servers and Celery workers a test starts inherit the environment
# (and the worker's name), and keep the database they are given.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if (
    _worker.startswith("gw")
    and os.environ.get("REDIS_URL")
    and not os.environ.get("PORTAL_TEST_REDIS_PER_WORKER")
):
    _parts = urlsplit(os.environ["REDIS_URL"])
    _base = int(_parts.path.strip("/") or 0)
    os.environ["REDIS_URL"] = urlunsplit(_parts._replace(path=f"/{_base + int(_worker[2:])}"))
    os.environ["PORTAL_TEST_REDIS_PER_WORKER"] = "1"

from portal.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
AXES_ENABLED = True

# WhiteNoise looks for STATIC_ROOT at start-up; the suite serves from the finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405

# The live test server speaks plain http on localhost.
OAUTH2_PROVIDER = {**OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"]}  # noqa: F405
