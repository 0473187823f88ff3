"""The Celery wiring: the beat schedule names the heartbeat, and a real worker
(in a thread of this process) takes the task from the broker the portal is
configured with and writes the heartbeat row.

The broker is Redis when REDIS_URL is set (CI), otherwise kombu's filesystem
transport in a temporary folder: no server needed.
"""

import os
import queue
import time
import uuid

import pytest
from celery.beat import Scheduler
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings as django_settings
from kombu import Connection
from kombu import pools as kombu_pools
from kombu.transport import filesystem as kombu_filesystem

from portal.celery import FilesystemTransport, app
from portal.models import WorkerHeartbeat
from portal.tasks import heartbeat

TIMEOUT = 8.0


def test_beat_schedule_contains_the_heartbeat():
    entry = app.conf.beat_schedule["heartbeat"]
    assert entry["task"] == "portal.tasks.heartbeat"
    assert entry["schedule"] == float(django_settings.PORTAL_HEARTBEAT_SECONDS)
    # The name beat sends resolves to the task the workers run.
    assert entry["task"] == heartbeat.name
    assert app.tasks[entry["task"]].run.__module__ == "portal.tasks"


def test_beat_scheduler_loads_the_heartbeat(tmp_path):
    scheduler = Scheduler(app, lazy=True)
    scheduler.setup_schedule()
    entry = scheduler.schedule["heartbeat"]
    assert entry.task == "portal.tasks.heartbeat"
    assert entry.schedule.run_every.total_seconds() == django_settings.PORTAL_HEARTBEAT_SECONDS


def test_app_is_configured_from_django_settings():
    assert app.conf.broker_url == django_settings.CELERY_BROKER_URL
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    if django_settings.REDIS_URL:
        assert app.conf.broker_url == django_settings.REDIS_URL
        assert not app.conf.broker_transport
    else:
        assert app.conf.broker_url == "filesystem://"
        assert app.conf.broker_transport == "portal.celery:FilesystemTransport"
        # Every file the embedded broker writes stays under PORTAL_VAR_DIR
        # (kombu's default control folder is ./control, wherever it runs).
        var_dir = str(django_settings.VAR_DIR)
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            assert app.conf.broker_transport_options[key].startswith(var_dir), key


# --- the embedded broker: messages appear whole ------------------------------


def _channel(tmp_path, transport):
    folder = tmp_path / "queue"
    folder.mkdir(exist_ok=True)
    (tmp_path / "processed").mkdir(exist_ok=True)
    connection = Connection(
        "filesystem://",
        transport=transport,
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "processed_folder": str(tmp_path / "processed"),
            "control_folder": str(tmp_path / "control"),
            "store_processed": False,
        },
    )
    return connection, connection.default_channel


def test_stock_filesystem_transport_hands_out_half_written_messages(tmp_path, monkeypatch):
    """Why the portal has its own transport: kombu creates the message file under
    its final name, then writes it. A worker polling at that moment takes an
    empty file; in a real worker that is "Unrecoverable error: JSONDecodeError"
    and the message is gone."""
    connection, producer = _channel(tmp_path, "filesystem")
    consumer = connection.channel()
    seen = []
    real_lock = kombu_filesystem.lock

    def lock_then_poll(handle, flags):
        real_lock(handle, flags)
        try:
            seen.append(consumer._get("celery"))
        except Exception as error:  # what the worker would meet
            seen.append(error)

    monkeypatch.setattr(kombu_filesystem, "lock", lock_then_poll)
    producer._put("celery", {"body": "hello"})
    assert len(seen) == 1
    assert isinstance(seen[0], ValueError)  # JSONDecodeError on an empty file
    # ...and the message was taken off the queue: lost.
    with pytest.raises(queue.Empty):
        consumer._get("celery")
    connection.release()


def test_portal_transport_hands_out_whole_messages_only(tmp_path, monkeypatch):
    connection, producer = _channel(tmp_path, FilesystemTransport)
    consumer = connection.channel()
    seen = []
    real_replace = os.replace

    def poll_then_replace(src, dst):
        # A worker polling while the message is being written sees nothing...
        with pytest.raises(queue.Empty):
            consumer._get("celery")
        seen.append("polled")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", poll_then_replace)
    producer._put("celery", {"body": "hello"})
    monkeypatch.undo()
    assert seen == ["polled"]
    # ...and the whole message once it is there.
    assert consumer._get("celery") == {"body": "hello"}
    assert os.listdir(tmp_path / "queue") == []
    connection.release()


def test_portal_transport_keeps_queues_apart_and_in_order(tmp_path):
    connection, channel = _channel(tmp_path, FilesystemTransport)
    channel._put("a", {"n": 1})
    channel._put("b", {"n": 2})
    time.sleep(0.002)
    channel._put("a", {"n": 3})
    assert channel._size("a") == 2
    assert channel._get("a") == {"n": 1}
    assert channel._get("a") == {"n": 3}
    assert channel._get("b") == {"n": 2}
    with pytest.raises(queue.Empty):
        channel._get("a")
    connection.release()


@pytest.fixture
def broker(tmp_path):
    """The app's own broker (Redis when configured, else the filesystem
    transport moved to a temporary folder), with the heartbeat routed to a
    queue of this test's own, so that neither other tests' messages nor another
    worker listening on a shared Redis get in the way. Restored afterwards."""
    queue_name = f"test-heartbeat-{uuid.uuid4().hex}"
    saved = {
        "broker_url": app.conf.broker_url,
        "broker_transport_options": app.conf.broker_transport_options,
        "task_routes": app.conf.task_routes,
    }
    if not django_settings.REDIS_URL:
        queue_dir = tmp_path / "queue"
        processed = tmp_path / "processed"
        queue_dir.mkdir()
        processed.mkdir()
        app.conf.broker_url = "filesystem://"
        app.conf.broker_transport_options = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed),
            "control_folder": str(tmp_path / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    app.conf.task_routes = {"portal.tasks.heartbeat": {"queue": queue_name}}
    _reset_app_caches()
    try:
        yield queue_name
    finally:
        app.conf.update(saved)
        _reset_app_caches()
        # start_worker(queues=...) narrowed what the app consumes from.
        app.amqp.queues._consume_from = None
        app.amqp.queues.pop(queue_name, None)


def _reset_app_caches() -> None:
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    # kombu keeps process-wide pools keyed by broker URL; a closed one must not
    # be handed out again to the next producer.
    kombu_pools.reset()
    app.amqp._producer_pool = None
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)


@pytest.fixture
def task_runs():
    """Report each task the worker finishes (signalled from the worker thread).

    The test waits on this rather than polling the table: SQLite's in-memory
    test database, shared between threads, refuses a write while another
    thread reads ("database table is locked") instead of waiting.
    """
    finished: queue.Queue = queue.Queue()

    def on_postrun(sender=None, task_id=None, state=None, **kwargs):
        finished.put((sender.name, state))

    task_postrun.connect(on_postrun, weak=False)
    try:
        yield finished
    finally:
        task_postrun.disconnect(on_postrun)


@pytest.mark.timeout(30)
def test_a_real_worker_runs_the_heartbeat(transactional_db, broker, task_runs):
    started = time.monotonic()
    assert not WorkerHeartbeat.objects.exists()
    with start_worker(
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        queues=[broker],
        shutdown_timeout=10,
    ):
        # What code calls.
        heartbeat.delay()
        assert task_runs.get(timeout=TIMEOUT) == ("portal.tasks.heartbeat", "SUCCESS")
        first = WorkerHeartbeat.objects.get(pk=1)
        assert first.hostname

        # What beat sends: the task by the name in the schedule. Running it
        # again updates the one row (the task is idempotent).
        entry = app.conf.beat_schedule["heartbeat"]
        app.send_task(entry["task"])
        assert task_runs.get(timeout=TIMEOUT) == ("portal.tasks.heartbeat", "SUCCESS")
        assert WorkerHeartbeat.objects.get(pk=1).beat_at > first.beat_at
        assert WorkerHeartbeat.objects.count() == 1
    assert time.monotonic() - started < 10


def test_heartbeat_task_is_idempotent(db):
    heartbeat()
    first = WorkerHeartbeat.objects.get(pk=1)
    heartbeat()
    assert WorkerHeartbeat.objects.count() == 1
    assert WorkerHeartbeat.objects.get(pk=1).beat_at >= first.beat_at
