import os
import uuid

import pytest

from tests.factories import FolderFactory, UserFactory

# Playwright's sync API runs an event loop in the test thread; the ORM calls
# made by fixtures around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """allauth's rate limits and used-code markers live in the cache: a key
    space per test (never cache.clear(): on Redis it would wipe the broker)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def tree(db):
    """Shared > Finance > Payables, Shared > HR, and an unrelated Other."""
    shared = FolderFactory(name="Shared")
    finance = FolderFactory(name="Finance", parent=shared)
    payables = FolderFactory(name="Payables", parent=finance)
    hr = FolderFactory(name="HR", parent=shared)
    other = FolderFactory(name="Other")
    return {"shared": shared, "finance": finance, "payables": payables, "hr": hr, "other": other}


@pytest.fixture
def make_user(db):
    def make(username: str | None = None, **kwargs):
        if username:
            kwargs["username"] = username
        return UserFactory(**kwargs)

    return make


@pytest.fixture
def tenant_admin(make_user):
    return make_user("root", is_superuser=True, is_staff=True)


def pytest_sessionstart(session):
    from tests import leak_guard

    leak_guard.install()


def pytest_sessionfinish(session, exitstatus):
    from tests import leak_guard

    found = leak_guard.findings()
    if found:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "Stored secrets leaked into output:\n  " + "\n  ".join(sorted(set(found))), red=True
        )
        session.exitstatus = 1
    elif leak_guard.secrets:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"Leak guard: {len(leak_guard.secrets)} stored secrets searched in "
            f"{len(leak_guard.outputs)} pages and log lines; none found."
        )
