"""Test settings: production-like (PORTAL_DEBUG off), fast hashing, no HTTPS redirect."""

import os
import tempfile

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

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
AXES_ENABLED = True

# WhiteNoise looks for STATIC_ROOT at start-up; the suite serves from the finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405

# The live test server speaks plain http on localhost.
OAUTH2_PROVIDER = {**OAUTH2_PROVIDER, "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"]}  # noqa: F405
