"""A real Celery worker for the tests that kill one (SIGKILL) mid-task: its
own queue on the suite's Redis database (``Broker``), and ``celery -A portal
worker`` in a process group of its own on the test database (``Worker``),
with a module of kill points loaded (``--include``) that writes the events
the test waits for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings

from tests.connections.kill_checkpoints import read_events
from tests.servers import database_url

ROOT = Path(__file__).resolve().parents[1]
# Seconds: an unacknowledged message is delivered again after this.
VISIBILITY_TIMEOUT = 3


class Broker:
    """The test's own queue on the suite's Redis database: send tasks as beat
    would, see what is left of them, and clean up after."""

    def __init__(self) -> None:
        import redis
        from celery import Celery

        self.url = settings.REDIS_URL
        self.queue = f"kill-test-{uuid.uuid4().hex[:12]}"
        self.redis = redis.Redis.from_url(self.url)
        self.app = Celery("kill-test", broker=self.url, set_as_current=False)
        self.nodes: list[str] = []

    def send(self, task: str, *args) -> None:
        self.app.send_task(task, args=list(args), queue=self.queue)

    def waiting(self) -> int:
        return self.redis.llen(self.queue)

    def unacked(self) -> list[bytes]:
        return [
            tag
            for tag, raw in self.redis.hgetall("unacked").items()
            if json.loads(raw)[2] == self.queue
        ]

    def drained(self, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.waiting() and not self.unacked():
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        tags = self.unacked()
        if tags:
            self.redis.hdel("unacked", *tags)
            self.redis.zrem("unacked_index", *tags)
        self.redis.delete(
            self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"
        )
        # Killed workers leave their remote-control binding behind (kombu
        # keeps it as "<routing key>\x06\x16<pattern>\x06\x16<queue>").
        pidbox = "_kombu.binding.celery.pidbox"
        ours = [
            member
            for member in self.redis.smembers(pidbox)
            if member.split(b"\x06\x16")[-1].decode(errors="replace") in self.nodes
        ]
        if ours:
            self.redis.srem(pidbox, *ours)
        self.app.close()
        self.redis.close()


class Worker:
    """``celery -A portal worker`` (one pool process) in a process group of
    its own, on the test database and the test's queue, with the kill points
    of ``include`` loaded; ``env`` adds to its environment."""

    def __init__(
        self, name: str, folder: Path, broker: Broker, *, include: str, **env: str
    ) -> None:
        self.events = folder / f"{name}.events"
        self.log = folder / f"{name}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": broker.url,
            "PORTAL_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "PORTAL_SANDBOX_ENABLED": "1",
            "PORTAL_TEST_EVENTS": str(self.events),
            "PORTAL_TEST_QUEUE": broker.queue,
            **env,
        }
        node = f"{name}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        broker.nodes.append(f"{node}.celery.pidbox")
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker",
            "--include", include,
            "-Q", broker.queue, "-n", node,
            "-P", "prefork", "-c", "1", "-l", "INFO",
            "--without-heartbeat", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
                command,
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def read(self) -> list[dict]:
        return read_events(self.events)

    def done(self, task: str) -> int:
        return sum(1 for e in self.read() if e["event"] == "task_done" and e["task"] == task)

    def wait_for(self, event: str, timeout: float, task: str = "", count: int = 1) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [
                e for e in self.read() if e["event"] == event and (not task or e["task"] == task)
            ]
            if len(found) >= count:
                return found[count - 1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} {task} from the worker:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
