"""Threads on SQLite's in-memory test database.

pytest-django's live server shares the test thread's one SQLite connection
with every request thread (the database lives in that connection), and other
threads of a test must use it too to see the data. One connection isolates
nothing between threads: Django keeps the transaction state (atomic blocks,
savepoints, on-commit hooks) on it, so two threads in a transaction at once
corrupt each other's ("no such savepoint"); a thread reads what another has
not committed, and its writes join the other's transaction; SQLite counts
changed rows per connection, so an UPDATE that changed nothing can report the
row another thread's UPDATE changed (a lease taken twice); and COMMIT fails
while another thread has not fetched what its INSERT ... RETURNING returned.

With a database file each thread has its own connection and SQLite lets one
transaction write at a time (the portal begins them IMMEDIATE).
``one_transaction_at_a_time`` gives the shared connection the same rule, a
little stricter: while a thread is in a transaction, the other threads'
statements wait for it to end; outside transactions, statements run one at a
time and their rows are fetched at once. On PostgreSQL every thread has its
own connection and it changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.sqlite3.base import SQLiteCursorWrapper

logger = logging.getLogger("django.db.backends.base")


def shared_in_memory_databases() -> dict:
    """The connections a thread must adopt (``connections[alias] = conn``) to
    see the test database: SQLite in memory, as the live server does."""
    return {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }


def _run_hooks(hooks: list) -> None:
    # As BaseDatabaseWrapper.run_and_clear_commit_hooks.
    for _, func, robust in hooks:
        if robust:
            try:
                func()
            except Exception as error:
                logger.error(
                    f"Error calling {func.__qualname__} in on_commit() (%s).", error, exc_info=True
                )
        else:
            func()


@contextlib.contextmanager
def one_transaction_at_a_time() -> Iterator[None]:
    """While active, one thread at a time uses the shared in-memory SQLite
    connection: for a whole outermost atomic block, or for one statement
    (with its rows). A block's on-commit hooks run once it has let go, as
    they would after COMMIT (a hook may call the live server, whose threads
    need the database)."""
    shared = shared_in_memory_databases()
    if not shared:
        yield
        return
    lock = threading.RLock()
    local = threading.local()
    cursor = SQLiteCursorWrapper
    names = ("execute", "executemany", "fetchone", "fetchmany", "fetchall", "__next__")
    original = {name: getattr(cursor, name) for name in names}
    own = {name: cursor.__dict__[name] for name in names if name in cursor.__dict__}
    original_enter, original_exit = transaction.Atomic.__enter__, transaction.Atomic.__exit__

    def depth() -> int:
        return getattr(local, "depth", 0)

    def leave() -> list:
        local.depth -= 1
        hooks: list = []
        if local.depth == 0:
            hooks, local.hooks = local.hooks, []
        lock.release()
        return hooks

    def enter(self):
        if (self.using or DEFAULT_DB_ALIAS) not in shared:
            return original_enter(self)
        lock.acquire()
        local.depth = depth() + 1
        if local.depth == 1:
            local.hooks = []
        try:
            return original_enter(self)
        except BaseException:
            _run_hooks(leave())
            raise

    def exit(self, exc_type, exc_value, traceback):
        if (self.using or DEFAULT_DB_ALIAS) not in shared:
            return original_exit(self, exc_type, exc_value, traceback)
        try:
            return original_exit(self, exc_type, exc_value, traceback)
        finally:
            _run_hooks(leave())

    def deferring(conn):
        def run_and_clear_commit_hooks() -> None:
            conn.validate_no_atomic_block()
            hooks, conn.run_on_commit = conn.run_on_commit, []
            if depth():
                local.hooks.extend(hooks)  # run once this thread lets go
            else:
                _run_hooks(hooks)

        return run_and_clear_commit_hooks

    def execute(self, query, params=None):
        self._fetched = None
        with lock:
            result = original["execute"](self, query, params)
            if not depth() and self.description is not None:
                self._fetched = deque(original["fetchall"](self))
        return result

    def executemany(self, query, param_list):
        self._fetched = None
        with lock:
            return original["executemany"](self, query, param_list)

    def fetched(self) -> deque | None:
        return self.__dict__.get("_fetched")

    def fetchone(self):
        rows = fetched(self)
        if rows is None:
            return original["fetchone"](self)
        return rows.popleft() if rows else None

    def fetchmany(self, size=None):
        rows = fetched(self)
        if rows is None:
            return original["fetchmany"](self, self.arraysize if size is None else size)
        count = self.arraysize if size is None else size
        return [rows.popleft() for _ in range(min(count, len(rows)))]

    def fetchall(self):
        rows = fetched(self)
        if rows is None:
            return original["fetchall"](self)
        everything = list(rows)
        rows.clear()
        return everything

    def next_row(self):
        rows = fetched(self)
        if rows is None:
            return original["__next__"](self)
        if not rows:
            raise StopIteration
        return rows.popleft()

    replacements = {
        "execute": execute,
        "executemany": executemany,
        "fetchone": fetchone,
        "fetchmany": fetchmany,
        "fetchall": fetchall,
        "__next__": next_row,
    }
    transaction.Atomic.__enter__, transaction.Atomic.__exit__ = enter, exit
    for name, replacement in replacements.items():
        setattr(cursor, name, replacement)
    for conn in shared.values():
        conn.run_and_clear_commit_hooks = deferring(conn)
    try:
        yield
    finally:
        transaction.Atomic.__enter__, transaction.Atomic.__exit__ = original_enter, original_exit
        for name in names:
            if name in own:
                setattr(cursor, name, own[name])
            else:
                delattr(cursor, name)  # inherited from sqlite3.Cursor again
        for conn in shared.values():
            del conn.run_and_clear_commit_hooks
