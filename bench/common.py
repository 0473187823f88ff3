"""What the benchmarks share: a fresh database of their own, a production-like
environment, Django set up in the bench process, gunicorn started and stopped
as a process group, and CPU time read from /proc.

Used by bench/api_bench.py and bench/refresh_bench.py.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench"


# --- Environment ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def fresh_database(name: str, sqlite_file: str) -> tuple[str, str]:
    """(DATABASE_URL for the bench, description). With DATABASE_URL set: the
    database ``name`` on that PostgreSQL server, dropped and created again
    (the database named in the URL is only used to connect). Without it: the
    SQLite file ``var/bench/<sqlite_file>``, deleted first."""
    given = os.environ.get("DATABASE_URL", "")
    if given:
        import psycopg

        if name == urlsplit(given).path.strip("/"):
            raise SystemExit(f"The bench drops its database: give it another name than {name!r}.")
        with psycopg.connect(given, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        return with_path(given, f"/{name}"), f"PostgreSQL (database {name})"
    VAR.mkdir(parents=True, exist_ok=True)
    path = VAR / sqlite_file
    for stale in VAR.glob(f"{sqlite_file}*"):
        stale.unlink()
    return f"sqlite:///{path}", f"SQLite ({path.relative_to(ROOT)})"


def redis_database(db: int) -> str:
    """REDIS_URL pointing at the bench's own Redis database ``db``, or ""."""
    given = os.environ.get("REDIS_URL", "")
    return with_path(given, f"/{db}") if given else ""


def environment(
    *,
    port: int,
    database_url: str,
    redis_url: str = "",
    conn_max_age: int = 60,
    cache_prefix: str = "bench",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A production-like environment for every process of a bench: debug off,
    fresh random secret and vault keys, the caller's DATABASE_URL and
    REDIS_URL only (the ones of the shell are dropped, like every PORTAL_
    variable), and ``extra`` on top."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL"} and not key.startswith("PORTAL_")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_DEBUG": "0",
            "PORTAL_SECRET_KEY": secrets.token_urlsafe(50),
            "PORTAL_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "PORTAL_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PORTAL_SSL_REDIRECT": "false",
            "PORTAL_SECURE_COOKIES": "false",
            "PORTAL_HSTS_SECONDS": "0",
            "PORTAL_VAR_DIR": str(VAR),
            "PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
            "PORTAL_SANDBOX_ENABLED": "1",
            "PORTAL_EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "PORTAL_LOG_LEVEL": "WARNING",
            "PORTAL_CACHE_PREFIX": cache_prefix,
            "PORTAL_DB_CONN_MAX_AGE": str(conn_max_age),
            "DATABASE_URL": database_url,
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def code_version() -> str:
    """The commit measured, "-dirty" when the working tree has changes."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def setup_django(env: dict[str, str]) -> None:
    """Django in the bench process, with the environment the servers get."""
    os.environ.clear()
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def stop_on_sigterm() -> None:
    """SIGTERM (and SIGHUP) end the bench like Ctrl-C does, so that its
    ``finally`` blocks stop the servers it started."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


# --- Processes ---------------------------------------------------------------------


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A server in a session of its own: Ctrl-C in the terminal reaches only
    the bench, which stops it (and its children) with ``stop``."""
    with open(log, "wb") as handle:
        return subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
            command,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def gunicorn(port: int, workers: int, env: dict, log: Path) -> subprocess.Popen:
    """``gunicorn portal.wsgi`` with ``workers`` sync workers on loopback
    (without gunicorn's control socket, which is one per machine user)."""
    command = [sys.executable, "-m", "gunicorn", "portal.wsgi",
               "-b", f"127.0.0.1:{port}", "-w", str(workers), "--no-control-socket"]  # fmt: skip
    return start(command, env, log)


def stop(process: subprocess.Popen) -> None:
    """A warm shutdown of the main process (it stops its own children), then
    the whole group for anything left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def wait_for_http(url: str, process: subprocess.Popen, log: Path, method: str = "GET") -> None:
    """Until the server answers ``url`` at all (any status)."""
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{log.name}: the server stopped:\n{log.read_text()[-3000:]}")
        try:
            requests.request(method, url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):  # not listening, or still booting
            time.sleep(0.2)
    raise SystemExit(f"The server did not answer at {url}")


# --- CPU time ----------------------------------------------------------------------


def cpu_snapshot(
    postgres_database: str = "", *, with_children: bool = False
) -> dict[int, tuple[object, float]]:
    """{pid: (key, CPU seconds so far)} of every process (Linux /proc; empty
    elsewhere). The key is the name for PostgreSQL and Redis server
    processes, else the process group. With ``postgres_database``, only the
    PostgreSQL backends connected to that database are kept: the server's
    other work (other databases, background processes) stays out. With
    ``with_children``, a process's figure includes the children it has
    reaped (cutime + cstime): PostgreSQL serves every new connection from a
    process of its own, gone by the end of a run, whose CPU time then counts
    with the postmaster's."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return {}
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            if name == "postgres" and postgres_database:
                # "postgres: 15/main: <user> <database> 127.0.0.1(40052) idle"
                title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").split()
                if postgres_database.encode() not in title[3:5]:
                    continue
        except (OSError, ValueError):
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        key = name if name in {"postgres", "redis-server"} else int(fields[2])
        # utime + stime, and cutime + cstime when asked for.
        used = sum(int(x) for x in fields[11 : 15 if with_children else 13])
        found[int(stat.parent.name)] = (key, used / ticks)
    return found


def cpu_used(before: dict, after: dict) -> dict:
    """CPU seconds used between two snapshots by key, process by process: a
    process that ended meanwhile (a database connection closed after its
    CONN_MAX_AGE) drops out rather than making the sum negative."""
    used: dict = {}
    for pid, (key, seconds) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier and earlier[0] == key else 0.0
        used[key] = used.get(key, 0.0) + max(0.0, seconds - start)
    return used


def cpu_seconds(postgres_database: str = "", *, with_children: bool = False) -> dict:
    """CPU seconds used so far by each process group, and by PostgreSQL and
    Redis server processes under their names (see ``cpu_snapshot``)."""
    totals: dict = {}
    for key, seconds in cpu_snapshot(postgres_database, with_children=with_children).values():
        totals[key] = totals.get(key, 0.0) + seconds
    return totals


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (Linux /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


# --- Shared by the benches that run Celery workers ---------------------------


def prepare_broker(redis_db: int) -> tuple[str, str]:
    """An empty broker: (REDIS_URL for the bench or "", description)."""
    shutil.rmtree(VAR / "celery", ignore_errors=True)
    url = redis_database(redis_db)
    if not url:
        return "", "the filesystem broker (var/bench/celery)"
    import redis

    client = redis.Redis.from_url(url)
    # The bench's own database: what an earlier, interrupted run left queued.
    stale = [b"celery", b"unacked", b"unacked_index", b"unacked_mutex"]
    stale += list(client.scan_iter(match="celery\x06\x16*"))
    client.delete(*stale)
    client.close()
    return url, f"Redis (database {redis_db})"


def wait_for_log(text: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{log.name}: the process stopped:\n{log.read_text()[-3000:]}")
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{log.name}: no {text!r} after {timeout} s")


def cpu_seconds_all() -> dict:
    """CPU seconds so far by process group, and by PostgreSQL and Redis server
    processes under their names (all of them), each figure including the
    children the process has reaped: a PostgreSQL connection's process is gone
    by the end of the run, and its CPU time then counts with the postmaster's."""
    return cpu_seconds(with_children=True)


class CpuMeter:
    """CPU milliseconds per item (a refresh, a check, a poll) spent by the
    provider, PostgreSQL, Redis and the working side (this process's client
    threads, or the Celery workers)."""

    def __init__(self, web: int, refreshers: list[int] | None = None) -> None:
        self.web, self.refreshers = web, refreshers
        self.before, self.own = cpu_seconds_all(), time.process_time()
        self.machine = machine_cpu()

    def per_item(self, refreshes: int) -> dict:
        after, own = cpu_seconds_all(), time.process_time()
        busy, total = (b - a for a, b in zip(self.machine, machine_cpu(), strict=True))

        def used(key) -> float:
            return after.get(key, 0.0) - self.before.get(key, 0.0)

        if self.refreshers is None:
            refreshing = own - self.own
        else:
            refreshing = sum(used(pid) for pid in self.refreshers)
        per = 1000 / max(refreshes, 1)
        return {
            "provider": used(self.web) * per,
            "postgres": used("postgres") * per,
            "redis": used("redis-server") * per,
            "bench": (own - self.own) * per,
            "working": refreshing * per,
            "machine_busy": busy / total if total else 0.0,
        }
