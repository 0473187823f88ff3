"""Django settings for the Connections portal.

Every value an operator may change comes from the environment (see
``.env.example``). Defaults are safe for one developer's machine: SQLite under
``var/`` and Celery's filesystem broker, so nothing needs a server. With
``PORTAL_DEBUG`` off, the values production needs must be given or start-up
stops with a message naming the variable.
"""

import logging
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("PORTAL_DEBUG", default=False)
VAR_DIR = Path(env.str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))


def _required_in_production(name: str, value: str) -> str:
    if not value and not DEBUG:
        raise ImproperlyConfigured(
            f"{name} is not set. It is required when PORTAL_DEBUG is off; "
            "see .env.example for what it means."
        )
    return value


SECRET_KEY = _required_in_production("PORTAL_SECRET_KEY", env.str("PORTAL_SECRET_KEY", default=""))
if not SECRET_KEY:
    # Development only (PORTAL_DEBUG on): a fixed, clearly insecure key.
    SECRET_KEY = "django-insecure-development-only-set-PORTAL_SECRET_KEY"  # noqa: S105

ALLOWED_HOSTS = env.list(
    "PORTAL_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else []
)
if not ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured("PORTAL_ALLOWED_HOSTS is not set (comma-separated host names).")

PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("PORTAL_CSRF_TRUSTED_ORIGINS", default=[PORTAL_BASE_URL])

# How many reverse proxies stand in front of the portal. 0 means the client is
# the TCP peer and X-Forwarded-For is ignored; N means the Nth address from the
# right of X-Forwarded-For is the client. See portal/client_ip.py.
PORTAL_TRUSTED_PROXY_COUNT = env.int("PORTAL_TRUSTED_PROXY_COUNT", default=0)

# Connector catalog: extra folders of YAML definitions (docs/connectors.md),
# and the Sandbox connector that talks to the portal's own sandbox API.
PORTAL_CONNECTORS_DIRS = env.list("PORTAL_CONNECTORS_DIRS", default=[])
PORTAL_SANDBOX_ENABLED = env.bool("PORTAL_SANDBOX_ENABLED", default=False)

# The portal's own registered OAuth 2.0 apps, per connector, as JSON:
# {"github": {"client_id": "...", "client_secret": "..."}}. Apps registered in
# the admin (Connections > Registered OAuth apps) take precedence.
PORTAL_OAUTH_APPS = env.json("PORTAL_OAUTH_APPS", default={})
# How long a started OAuth 2.0 authorization may take before it is refused.
PORTAL_OAUTH_FLOW_SECONDS = env.int("PORTAL_OAUTH_FLOW_SECONDS", default=600)

# Token refresh (connections/refresh.py, docs/operations.md): refresh tokens
# expiring within the lead time; spread a sweep's refreshes over the jitter;
# a refresh holds its lease at most this long (longer than the token call's
# timeouts); callers wait this long for another caller's refresh.
PORTAL_REFRESH_LEAD_SECONDS = env.int("PORTAL_REFRESH_LEAD_SECONDS", default=300)
PORTAL_REFRESH_JITTER_SECONDS = env.int("PORTAL_REFRESH_JITTER_SECONDS", default=60)
PORTAL_REFRESH_LEASE_SECONDS = env.int("PORTAL_REFRESH_LEASE_SECONDS", default=60)
PORTAL_REFRESH_WAIT_SECONDS = env.float("PORTAL_REFRESH_WAIT_SECONDS", default=30)
PORTAL_REFRESH_SWEEP_SECONDS = env.int("PORTAL_REFRESH_SWEEP_SECONDS", default=60)
PORTAL_REFRESH_BATCH = env.int("PORTAL_REFRESH_BATCH", default=5000)

# Health polling (connections/tasks.py, docs/operations.md): beat runs the
# sweep this often; it enqueues at most a batch of due checks, spread over the
# jitter; a connection turns Degraded after this many transient failures in a
# row; a PAT or client secret with a known expiry warns this many days ahead.
PORTAL_HEALTH_SWEEP_SECONDS = env.int("PORTAL_HEALTH_SWEEP_SECONDS", default=60)
PORTAL_HEALTH_BATCH = env.int("PORTAL_HEALTH_BATCH", default=500)
PORTAL_HEALTH_JITTER_SECONDS = env.int("PORTAL_HEALTH_JITTER_SECONDS", default=30)
PORTAL_HEALTH_DEGRADED_AFTER = env.int("PORTAL_HEALTH_DEGRADED_AFTER", default=2)
PORTAL_SECRET_EXPIRY_WARNING_DAYS = env.int("PORTAL_SECRET_EXPIRY_WARNING_DAYS", default=14)

# Event triggers (connections/triggers/tasks.py): beat runs the poll sweep and
# the delivery sweep (first attempts whose message was lost, retries that are
# due) this often; each enqueues at most a batch.
PORTAL_TRIGGER_POLL_SWEEP_SECONDS = env.int("PORTAL_TRIGGER_POLL_SWEEP_SECONDS", default=30)
PORTAL_TRIGGER_POLL_BATCH = env.int("PORTAL_TRIGGER_POLL_BATCH", default=1000)
PORTAL_TRIGGER_DELIVERY_SWEEP_SECONDS = env.int("PORTAL_TRIGGER_DELIVERY_SWEEP_SECONDS", default=10)
PORTAL_TRIGGER_DELIVERY_BATCH = env.int("PORTAL_TRIGGER_DELIVERY_BATCH", default=1000)

# Solution deployments (solutions/deploy/engine.py): a worker running one
# holds a lease this long, renewed at every step; beat's sweep resumes or
# rolls back those whose lease ran out (a worker that died) this often.
PORTAL_DEPLOY_LEASE_SECONDS = env.int("PORTAL_DEPLOY_LEASE_SECONDS", default=60)
PORTAL_DEPLOY_SWEEP_SECONDS = env.int("PORTAL_DEPLOY_SWEEP_SECONDS", default=30)

# Runtime API (connections/api/, docs/api.md): requests per user per window,
# all of a user's keys together ("600/m": django-ratelimit's notation),
# counted in the cache, so
# shared between processes only with REDIS_URL; the default and longest
# lifetime of a new key; how long a recorded last use stays good enough
# (verifying a key writes at most once per this many seconds).
PORTAL_API_RATE_LIMIT = env.str("PORTAL_API_RATE_LIMIT", default="600/m")
# Refused API keys per client address per window; beyond it the address gets
# 429 without a database query until the window ends (N/s, N/m, N/h, N/5m...).
PORTAL_API_REFUSED_RATE_LIMIT = env.str("PORTAL_API_REFUSED_RATE_LIMIT", default="30/m")
for _name in ("PORTAL_API_RATE_LIMIT", "PORTAL_API_REFUSED_RATE_LIMIT"):
    if not re.fullmatch(r"[1-9]\d*/[1-9]?\d*[smhd]", globals()[_name]):
        raise ImproperlyConfigured(
            f"{_name} is {globals()[_name]!r}: write requests per window, as 600/m, 20/s "
            "or 100/5m (s, m, h or d)."
        )
PORTAL_API_KEY_DAYS = env.int("PORTAL_API_KEY_DAYS", default=90)
PORTAL_API_KEY_MAX_DAYS = env.int("PORTAL_API_KEY_MAX_DAYS", default=365)
PORTAL_API_KEY_TOUCH_SECONDS = env.int("PORTAL_API_KEY_TOUCH_SECONDS", default=60)
# The header in which an automation names the job it runs for (audited).
PORTAL_API_JOB_HEADER = env.str("PORTAL_API_JOB_HEADER", default="X-Job-Id")

# Sign-up is by invitation unless this is on.
PORTAL_OPEN_SIGNUP = env.bool("PORTAL_OPEN_SIGNUP", default=False)
PORTAL_INVITATION_DAYS = env.int("PORTAL_INVITATION_DAYS", default=7)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "guardian",
    "axes",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "oauth2_provider",
    "ninja",
    "portal",
    "connections",
    "solutions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "axes.middleware.AxesMiddleware",
    "portal.audit.AuditContextMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "portal.context_processors.shell",
                "connections.context_processors.sandbox",
                "connections.context_processors.needs_reconnect",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("PORTAL_DB_CONN_MAX_AGE", default=0)
# Parameters bound by the server, so that psycopg prepares a statement run
# five times on one connection: the server then neither parses nor plans it
# again (with PORTAL_DB_CONN_MAX_AGE, a worker's connection lives across
# requests). Off for a pooler that cannot keep prepared statements (PgBouncer
# in transaction mode without max_prepared_statements).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "PORTAL_DB_PREPARED_STATEMENTS", default=True
):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
# Audit records of credential reads (portal/audit.py) are committed
# asynchronously on PostgreSQL: through a connection of their own that opens
# with synchronous_commit off, so a read is answered without waiting for its
# record's WAL flush (no extra round trip). The record survives any crash of
# the portal's processes; a crash of the database server itself can lose the
# records of the last 3 x wal_writer_delay (600 ms by default) of reads
# (docs/security.md, "Audit log"). PORTAL_AUDIT_SYNCHRONOUS=1 makes every
# read durable before it is answered. SQLite: one connection, no change.
PORTAL_AUDIT_SYNCHRONOUS = env.bool("PORTAL_AUDIT_SYNCHRONOUS", default=False)
# Audit records older than this many days are pruned (manage.py prune_audit,
# and daily by beat); 0 keeps them all.
PORTAL_AUDIT_RETENTION_DAYS = env.int("PORTAL_AUDIT_RETENTION_DAYS", default=365)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not (
    PORTAL_AUDIT_SYNCHRONOUS
):
    DATABASES["audit"] = {
        **DATABASES["default"],
        "OPTIONS": {
            **DATABASES["default"].get("OPTIONS", {}),
            "options": "-c synchronous_commit=off",
        },
        # The test database is default's; no second one is made.
        "TEST": {"MIRROR": "default"},
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Concurrent web and worker processes share the file: wait for locks
    # instead of failing at once, and take the write lock at BEGIN.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # django-redis keeps one pooled client per process (Django's own Redis
    # cache builds a client per operation): every API call's rate limit is
    # one round trip on a kept connection.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("PORTAL_CACHE_PREFIX", default="portal"),
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "account_login"

# --- django-allauth -------------------------------------------------------
ACCOUNT_ADAPTER = "portal.auth.adapter.PortalAccountAdapter"
ACCOUNT_FORMS = {
    "login": "portal.auth.forms.PortalLoginForm",
    "signup": "portal.auth.forms.PortalSignupForm",
}
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "optional"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
# Failed passwords: django-axes locks out per (account, client address); see
# PortalAccountAdapter.pre_authenticate. allauth's "login_failed" limit then only
# counts wrong second-factor codes: 10 a minute per address, 5 per 5 minutes per
# account. Its other limits stay at allauth's defaults.
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/300s/key"}
ALLAUTH_TRUSTED_PROXY_COUNT = PORTAL_TRUSTED_PROXY_COUNT
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env.str("PORTAL_MFA_ISSUER", default="Connections portal")

# --- django-axes: login throttling ----------------------------------------
AXES_FAILURE_LIMIT = env.int("PORTAL_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("PORTAL_LOGIN_COOLOFF_HOURS", default=0.5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "portal.client_ip.client_ip"
AXES_USERNAME_CALLABLE = "portal.auth.lockout.attempted_login"
AXES_LOCKOUT_TEMPLATE = "account/lockout.html"
AXES_VERBOSE = False

# --- The Sandbox OAuth 2.0 provider (django-oauth-toolkit) -----------------
# Served under /sandbox/oauth/ only when PORTAL_SANDBOX_ENABLED is on.
OAUTH2_PROVIDER = {
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("PORTAL_SANDBOX_TOKEN_SECONDS", default=3600),
    "SCOPES": {
        "profile": "Read your name and e-mail address",
        "records.read": "Read your sandbox records",
        "records.write": "Change your sandbox records",
    },
    "DEFAULT_SCOPES": ["profile"],
    "OAUTH2_VALIDATOR_CLASS": "connections.sandbox_provider.SandboxValidator",
    # RFC 9700 (OAuth 2.0 Security BCP), enforced.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # Plain-http callbacks only on request: debug on (make dev), or
    # PORTAL_SANDBOX_HTTP_REDIRECTS, which make run sets for its portal on
    # http://127.0.0.1. Production leaves it unset: https only.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"]
    if env.bool("PORTAL_SANDBOX_HTTP_REDIRECTS", default=DEBUG)
    else ["https"],
}
# The Sandbox offers the password grant on purpose: "OAuth 2.0 Password" is one
# of the auth types connections must support, so the sandbox must serve it.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W002"]

# --- django-guardian ------------------------------------------------------
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False
GUARDIAN_MONKEY_PATCH_USER = False

# --- Content-Security-Policy (django-csp 4) --------------------------------
from csp.constants import NONCE, NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    }
}

# --- Security headers and cookies ----------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("PORTAL_SESSION_AGE", default=60 * 60 * 12)
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("PORTAL_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("PORTAL_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("PORTAL_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("PORTAL_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("PORTAL_HSTS_PRELOAD", default=not DEBUG)
# Load balancers probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if PORTAL_TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Credential vault -----------------------------------------------------
# Comma-separated keys, each 32 random bytes in url-safe base64. The FIRST key
# encrypts, ALL of them decrypt: to rotate, put a new key first, run
# `manage.py rotate_encryption_keys`, then drop the old key. See docs/security.md.
PORTAL_ENCRYPTION_KEYS = env.list("PORTAL_ENCRYPTION_KEYS", default=[])
if not any(key.strip() for key in PORTAL_ENCRYPTION_KEYS) and not DEBUG:
    raise ImproperlyConfigured(
        "PORTAL_ENCRYPTION_KEYS is not set. It is required when PORTAL_DEBUG is off: it holds "
        "the keys that encrypt stored credentials. Generate one with "
        "`PORTAL_DEBUG=1 python manage.py generate_encryption_key` or "
        '`python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"`'
        ", set PORTAL_ENCRYPTION_KEYS to it, and keep it safe: without it the stored "
        "credentials cannot be decrypted."
    )

# --- E-mail ---------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "PORTAL_EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("PORTAL_EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("PORTAL_EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("PORTAL_EMAIL_USER", default="")
EMAIL_HOST_PASSWORD = env.str("PORTAL_EMAIL_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("PORTAL_EMAIL_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("PORTAL_FROM_EMAIL", default="portal@localhost")

# --- Internationalisation and static files -------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# With debug off, WhiteNoise serves collectstatic's output (hashed names from
# its manifest; `make run` collects first). A page naming a file the manifest
# lacks fails, so the error pages (templates/_error_page.html and the 400,
# 403, 404 and 500 pages that extend it) name no static file at all.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Celery ---------------------------------------------------------------
CELERY_DATA_DIR = VAR_DIR / "celery"
# With Redis, a task a worker took and has not acknowledged within the
# visibility timeout is delivered again: that is how a killed worker's task
# comes back (docs/operations.md, "The broker"). A task sent with a countdown
# is taken at once and held, unacknowledged, until it is due and has run, so
# the timeout must exceed the longest countdown plus a run, or such a task
# runs twice. The longest countdown: a refresh retry's backoff, at most
# connections.tasks.MAX_BACKOFF_SECONDS (600), or a sweep's jitter; a retry
# runs within its wait for the lease plus the lease. The default leaves room
# for a sweep's task of 25 refreshes against a provider that never answers.
PORTAL_CELERY_LONGEST_COUNTDOWN = max(
    600, PORTAL_REFRESH_JITTER_SECONDS, PORTAL_HEALTH_JITTER_SECONDS
)
PORTAL_CELERY_VISIBILITY_TIMEOUT = env.int("PORTAL_CELERY_VISIBILITY_TIMEOUT", default=900)
# Checked at start-up: portal.E001 (portal/checks.py).

if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": PORTAL_CELERY_VISIBILITY_TIMEOUT}
else:
    CELERY_BROKER_URL = "filesystem://"
    # kombu's filesystem transport, with messages written atomically (portal/celery.py).
    CELERY_BROKER_TRANSPORT = "portal.celery:FilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DATA_DIR / "beat-schedule")
PORTAL_HEARTBEAT_SECONDS = env.int("PORTAL_HEARTBEAT_SECONDS", default=60)

# --- Outbound HTTP --------------------------------------------------------
# Every outbound call goes through connections/egress.py. Loopback, link-local,
# private, carrier-grade NAT and cloud metadata addresses are refused unless
# they fall inside one of these networks, separated by commas. A CIDR or an
# address opens every port ("10.20.0.0/16,192.168.5.10"); ":port" opens only
# that port, and bare numbers after it more ports of the same entry
# ("10.20.0.5:443,8443"; IPv6 in brackets: "[fd00::/64]:443"). Plain http is
# allowed only to them. A metadata address (169.254.169.254) opens only when
# listed as a /32 itself. Kept in the canonical form ("10.20.0.5/32:443,8443").
from connections.egress import parse_allowed_networks  # noqa: E402

try:
    PORTAL_EGRESS_ALLOWED_NETWORKS = [
        str(entry)
        for entry in parse_allowed_networks(
            env.list("PORTAL_EGRESS_ALLOWED_NETWORKS", default=[]),
            source="PORTAL_EGRESS_ALLOWED_NETWORKS",
        )
    ]
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from None
PORTAL_HTTP_CONNECT_TIMEOUT = env.float("PORTAL_HTTP_CONNECT_TIMEOUT", default=5)  # seconds
PORTAL_HTTP_READ_TIMEOUT = env.float("PORTAL_HTTP_READ_TIMEOUT", default=20)  # seconds
# A whole call, redirects and body included, however slowly the bytes come.
PORTAL_HTTP_TOTAL_TIMEOUT = env.float("PORTAL_HTTP_TOTAL_TIMEOUT", default=30)  # seconds
# The largest answer the portal reads (decoded); a longer one is a failure.
PORTAL_HTTP_MAX_RESPONSE_BYTES = env.int("PORTAL_HTTP_MAX_RESPONSE_BYTES", default=10_485_760)
PORTAL_HTTP_MAX_REDIRECTS = env.int("PORTAL_HTTP_MAX_REDIRECTS", default=3)
if min(PORTAL_HTTP_CONNECT_TIMEOUT, PORTAL_HTTP_READ_TIMEOUT, PORTAL_HTTP_TOTAL_TIMEOUT) <= 0:
    raise ImproperlyConfigured("PORTAL_HTTP_*_TIMEOUT settings are seconds, above 0.")
if PORTAL_HTTP_MAX_RESPONSE_BYTES < 1024:
    raise ImproperlyConfigured("PORTAL_HTTP_MAX_RESPONSE_BYTES must be at least 1024 (bytes).")


# --- Logging --------------------------------------------------------------
class _OneLineForClientErrors(logging.Filter):
    """A refused request (403, 404, a bad Host header: any 4xx Django logs)
    is logged as one line, "Forbidden (Permission denied): /path", without
    the traceback Django attaches: it says nothing an operator can act on.
    Server errors (5xx) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.exc_info and isinstance(status, int) and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"one_line_for_client_errors": {"()": _OneLineForClientErrors}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            # On the handler too: django.security.<name> loggers (DisallowedHost...).
            "filters": ["one_line_for_client_errors"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("PORTAL_LOG_LEVEL", default="INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},
        # Without handlers of its own: Django's console handler (debug on)
        # printed every record a second time beside the root's. Its level
        # stays Django's (INFO); records reach the root's console.
        "django": {"handlers": []},
        "django.request": {"filters": ["one_line_for_client_errors"]},
    },
}
