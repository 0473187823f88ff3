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
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # A pytest-xdist worker: the controller reports for all of them.
        workeroutput["leaks"] = sorted(set(found))
        workeroutput["secrets"] = len(leak_guard.secrets)
        workeroutput["outputs"] = len(leak_guard.outputs)
        return
    found = [*found, *_from_workers["leaks"]]
    secrets = len(leak_guard.secrets) + _from_workers["secrets"]
    outputs = len(leak_guard.outputs) + _from_workers["outputs"]
    if found:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "Stored secrets leaked into output:\n  " + "\n  ".join(sorted(set(found))), red=True
        )
        session.exitstatus = 1
    elif secrets:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"Leak guard: {secrets} stored secrets searched in "
            f"{outputs} pages and log lines; none found."
        )


# What the leak guards of pytest-xdist's workers found, for the controller.
_from_workers: dict = {"leaks": [], "secrets": 0, "outputs": 0}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", {})
    _from_workers["leaks"].extend(output.get("leaks", []))
    _from_workers["secrets"] += output.get("secrets", 0)
    _from_workers["outputs"] += output.get("outputs", 0)


@pytest.fixture
def broker():
    """The test's own queue for a real Celery worker that the test kills
    (``tests.celery_worker``); skips unless the suite runs on Redis and on
    a database the worker process can open (PostgreSQL)."""
    from django.conf import settings
    from django.db import connection

    from tests.celery_worker import Broker

    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL) for a worker whose unacknowledged tasks come back")
    if connection.vendor != "postgresql":
        pytest.skip("needs a database the worker process can open: PostgreSQL (DATABASE_URL)")
    queue = Broker()
    yield queue
    queue.close()
