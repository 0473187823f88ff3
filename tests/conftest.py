import os

import pytest

from tests.factories import FolderFactory, UserFactory

# Playwright's sync API runs an event loop in the test thread; the ORM calls
# made by fixtures around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


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
