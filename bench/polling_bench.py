"""Polling engine benchmark: how fast a Celery worker with `make run`'s
settings drains N due health checks, then N due trigger polls, against a
provider served on this machine, next to a plain `requests.Session` loop
making the same requests to the same server; and how long an event takes
from the poll that stored it to its delivered webhook. See bench/README.md.

    .venv/bin/python bench/polling_bench.py [--connections 3000] ...

PostgreSQL when DATABASE_URL is set (a database of the bench's own on that
server), else a SQLite file under var/bench; Redis when REDIS_URL is set (a
Redis database of the bench's own), else the embedded filesystem broker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/common.py, next to this file
from common import ROOT, VAR

TOKEN = "bench-token"  # noqa: S105 (the provider accepts any token)
FIRE_TOKEN = "bench-fire-token"  # noqa: S105 (its polls find one new record each time)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=3000, help="N (3000)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="worker pool processes (2, as make run)"
    )
    parser.add_argument(
        "--provider-workers", type=int, default=2, help="provider gunicorn workers (2)"
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=8, help="each plain loop run (8 s)"
    )
    parser.add_argument("--deliveries", type=int, default=40, help="events timed to delivery (40)")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=0,
        help="PORTAL_DB_CONN_MAX_AGE for the worker (0, as make run)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="give up after (600 s)")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database (13)")
    parser.add_argument("--database", default="portal_bench_polling", help="PostgreSQL database")
    return parser.parse_args()


# --- The webhook receiver -------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Takes webhooks on loopback and notes when each arrived, by webhook-id."""

    daemon_threads = True

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        arrived = time.time()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.arrivals.setdefault(self.headers.get("webhook-id", ""), arrived)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


# --- Seeding ----------------------------------------------------------------------


def seed(n: int, deliveries: int, webhook_url: str) -> None:
    """Three sets of Sandbox connections with a personal access token: N due
    for a health check, N (not due) with one due trigger each, and
    ``deliveries`` with a trigger whose polls find a new record every time,
    its process delivering to the receiver."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from connections import vault
    from connections.models import Connection, ConnectionState, Credential, Process, Trigger
    from connections.triggers.processes import create_process
    from portal.models import Folder

    now = timezone.now()
    later = now + timedelta(days=1)
    with transaction.atomic():
        user = get_user_model().objects.create_user("bench", email="bench@example.com")
        folder = Folder.objects.create(name="Benchmark", kind=Folder.Kind.SHARED)

        def connections(prefix: str, count: int, next_check_at) -> list[Connection]:
            made = Connection.objects.bulk_create(
                [
                    Connection(
                        folder=folder,
                        connector_key="sandbox",
                        name=f"{prefix} {i:06d}",
                        auth_type="pat",
                        state=ConnectionState.CONNECTED,
                        account_identity="bench",
                        next_check_at=next_check_at,
                        created_by=user,
                        authenticated_by=user,
                    )
                    for i in range(count)
                ],
                batch_size=1000,
            )
            token = FIRE_TOKEN if prefix == "Fire" else TOKEN
            credentials = []
            for connection in made:
                ciphertext, key_id = vault.seal(
                    {"token": token}, aad=vault.credential_aad(connection.pk)
                )
                credentials.append(
                    Credential(connection_id=connection.pk, ciphertext=ciphertext, key_id=key_id)
                )
            Credential.objects.bulk_create(credentials, batch_size=1000)
            return made

        connections("Check", n, now - timedelta(seconds=1))
        polled = connections("Poll", n, later)
        fired = connections("Fire", deliveries, later)
        quiet = Process.objects.create(folder=folder, name="Quiet", job_queue=True)
        Trigger.objects.bulk_create(
            [
                Trigger(connection=c, event_key="record_created", process=quiet, next_poll_at=later)
                for c in polled
            ],
            batch_size=1000,
        )
        hooked = create_process(
            folder=folder, name="Hooked", webhook_url="https://receiver.example.com/hook"
        ).process
        Process.objects.filter(pk=hooked.pk).update(webhook_url=webhook_url)
        Trigger.objects.bulk_create(
            [
                Trigger(
                    connection=c, event_key="record_created", process=hooked, next_poll_at=later
                )
                for c in fired
            ]
        )


# --- The measurements -----------------------------------------------------------------


def plain_loop(url: str, seconds: float) -> dict:
    """One plain `requests.Session` doing GET ``url`` in a loop for ``seconds``."""
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    done = failed = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        answer = session.get(url, headers=headers, timeout=30)
        if answer.status_code == 200:
            done += 1
        else:
            failed += 1
    elapsed = time.monotonic() - began
    return {"done": done, "failed": failed, "seconds": elapsed, "rate": done / elapsed}


def drain(kind: str, n: int, timeout: float) -> tuple[int, float]:
    """Send the sweep as beat would; (items done, seconds from sending it to
    the last one recorded). ``kind``: "checks" or "polls"."""
    from django.db.models import Max
    from django.utils import timezone

    from connections.models import Connection, Trigger
    from connections.tasks import health_sweep
    from connections.triggers.tasks import poll_sweep

    if kind == "checks":
        rows, stamp, sweep = (
            Connection.objects.filter(name__startswith="Check"),
            "last_checked_at",
            health_sweep,
        )
    else:
        rows, stamp, sweep = (
            Trigger.objects.filter(connection__name__startswith="Poll"),
            "last_polled_at",
            poll_sweep,
        )
    if kind == "polls":
        Trigger.objects.filter(connection__name__startswith="Poll").update(
            next_poll_at=timezone.now()
        )
    sent = timezone.now()
    began = time.monotonic()
    sweep.apply_async()
    done = 0
    while time.monotonic() - began < timeout:
        time.sleep(0.5)  # polling lightly: the bench shares the CPUs it measures
        done = rows.filter(**{f"{stamp}__gte": sent}).count()
        if done >= n:
            break
    last = rows.aggregate(last=Max(stamp))["last"]
    seconds = (last - sent).total_seconds() if last and done else time.monotonic() - began
    return done, seconds


def event_to_delivery(receiver: Receiver, count: int, timeout: float) -> list[float]:
    """Poll the Fire triggers twice (the first poll sets the cursor, the
    second finds one new record each); seconds from each event's commit to
    its webhook's arrival."""
    from django.utils import timezone

    from connections.models import Job, Trigger
    from connections.triggers.tasks import poll_sweep

    fire = Trigger.objects.filter(connection__name__startswith="Fire")
    for _ in range(2):
        sent = timezone.now()
        fire.update(next_poll_at=sent, backoff_until=None)
        poll_sweep.apply_async()
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            time.sleep(0.2)
            if fire.filter(last_polled_at__gte=sent).count() >= count:
                break
    began = time.monotonic()
    jobs = Job.objects.filter(trigger__in=fire).select_related("event")
    while time.monotonic() - began < timeout:
        with receiver.lock:
            arrived = dict(receiver.arrivals)
        if jobs.count() and all(job.webhook_id in arrived for job in jobs):
            break
        time.sleep(0.2)
    return sorted(
        arrived[job.webhook_id] - job.event.created_at.timestamp()
        for job in jobs
        if job.webhook_id in arrived
    )


def recording_share(n: int) -> dict:
    """In this process: a batch of health checks through the engine, with the
    time in ``record_checks`` (the recording) apart from the rest (reading,
    decrypting, the guarded requests)."""
    from django.utils import timezone

    from connections import engine
    from connections.actions import check
    from connections.models import Connection

    ids = list(Connection.objects.filter(name__startswith="Check").values_list("pk", flat=True)[:n])
    Connection.objects.filter(pk__in=ids).update(
        next_check_at=timezone.now() - timedelta(seconds=1)
    )
    spent = {"recording": 0.0}
    record = check.record_checks

    def timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return record(*args, **kwargs)
        finally:
            spent["recording"] += time.perf_counter() - began

    check.record_checks = timed
    try:
        began = time.perf_counter()
        for chunk in engine.chunks(ids, 25):
            with engine.Batch() as batch:
                check.check_connections(chunk, batch)
        total = time.perf_counter() - began
    finally:
        check.record_checks = record
    return {
        "checks": len(ids),
        "ms_per_check": total * 1000 / max(len(ids), 1),
        "recording_ms_per_check": spent["recording"] * 1000 / max(len(ids), 1),
    }


# --- Main -------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    n = args.connections
    VAR.mkdir(parents=True, exist_ok=True)
    port = common.free_port()  # the provider: the Sandbox connector's base URL points there
    database_url, database = common.fresh_database(args.database, "bench-polling.sqlite3")
    redis_url, broker = common.prepare_broker(args.redis_db)
    env = common.environment(
        port=port,
        database_url=database_url,
        redis_url=redis_url,
        conn_max_age=args.conn_max_age,
        extra={
            # One sweep enqueues everything due at once (no jitter): the bench
            # measures throughput, not the pacing of a real beat.
            "PORTAL_HEALTH_BATCH": str(n),
            "PORTAL_HEALTH_JITTER_SECONDS": "0",
            "PORTAL_TRIGGER_POLL_BATCH": str(n + args.deliveries),
            # The provider and the receiver are on loopback.
            "PORTAL_EGRESS_ALLOWED_NETWORKS": "127.0.0.1/32",
        },
    )
    common.setup_django(env)
    from django.core.management import call_command

    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    print(f"Polling benchmark: {n} checks and {n} polls, {database}, {broker}")
    began = time.monotonic()
    call_command("migrate", verbosity=0)
    seed(n, args.deliveries, receiver.url)
    made = 2 * n + args.deliveries
    print(f"  set up (migrate, {made} connections) in {time.monotonic() - began:.1f} s")

    base = f"http://127.0.0.1:{port}/sandbox/api"
    processes = []
    try:
        provider_log = VAR / "provider.log"
        provider = common.start(
            [sys.executable, "-m", "gunicorn", "bench.provider_app:app", "-b", f"127.0.0.1:{port}",
             "-w", str(args.provider_workers), "-k", "gthread", "--threads", "8",
             "--no-control-socket"],
            env,
            provider_log,
        )  # fmt: skip
        processes.append(provider)
        common.wait_for_http(f"{base}/me", provider, provider_log)
        print(f"  provider: gunicorn, {args.provider_workers} workers x 8 threads, {base}")
        plain_loop(f"{base}/me", 1)  # warm up
        plain = {
            "checks": plain_loop(f"{base}/me", args.baseline_seconds),
            "polls": plain_loop(f"{base}/records?order=asc&limit=50", args.baseline_seconds),
        }
        worker_log = VAR / "celery-worker-polling.log"
        worker = common.start(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "-n", "polling@%h",
             "-c", str(args.concurrency), "-l", "INFO",
             "--without-mingle", "--without-gossip", "--without-heartbeat"],
            env,
            worker_log,
        )  # fmt: skip
        processes.append(worker)
        common.wait_for_log(" ready.", worker, worker_log)
        print(f"  Celery: 1 worker x {args.concurrency} pool processes (make run's settings)")
        runs = {}
        for kind in ("checks", "polls"):
            meter = common.CpuMeter(provider.pid, [worker.pid])
            done, seconds = drain(kind, n, args.timeout)
            runs[kind] = {
                "done": done,
                "seconds": seconds,
                "rate": done / seconds,
                "cpu_ms": meter.per_item(done),
            }
        latencies = event_to_delivery(receiver, args.deliveries, args.timeout)
        common.stop(worker)
        processes.remove(worker)
        share = recording_share(min(n, 500))
    finally:
        for process in reversed(processes):
            common.stop(process)
        receiver.shutdown()

    print()
    print(
        f"  {'':34} {'done':>6} {'seconds':>8} {'per second':>11} {'plain loop':>11} {'ratio':>6}"
    )
    ok = True
    for kind in ("checks", "polls"):
        run, base_rate = runs[kind], plain[kind]["rate"]
        ratio = run["rate"] / base_rate if base_rate else 0.0
        ok = ok and run["done"] == n and run["rate"] >= 300 and ratio >= 0.3
        label = "health checks" if kind == "checks" else "trigger polls (1 per connection)"
        print(
            f"  {label:34} {run['done']:>6} {run['seconds']:>8.1f} {run['rate']:>11.1f} "
            f"{base_rate:>11.1f} {ratio:>6.2f}"
        )
    print("  goals: at least 300 per second and at least 0.3 of the plain loop")
    median = statistics.median(latencies) if latencies else float("inf")
    ok = ok and len(latencies) == args.deliveries and median < 2
    if latencies:
        print(
            f"  event to delivered webhook: median {median:.3f} s, max {latencies[-1]:.3f} s "
            f"over {len(latencies)} events of {args.deliveries} (goal: median under 2 s)"
        )
    else:
        print("  event to delivered webhook: no webhook arrived")
    print(
        f"  recording (in the bench process, {share['checks']} checks): "
        f"{share['ms_per_check']:.2f} ms per check, of which {share['recording_ms_per_check']:.2f}"
        " ms writing the results"
    )
    print("  CPU ms per item:      provider  PostgreSQL  Redis  worker  bench  machine busy")
    for kind in ("checks", "polls"):
        cpu = runs[kind]["cpu_ms"]
        print(
            f"    {kind:18} {cpu['provider']:>8.2f} {cpu['postgres']:>11.2f} "
            f"{cpu['redis']:>6.2f} {cpu['working']:>7.2f} {cpu['bench']:>6.2f} "
            f"{cpu['machine_busy']:>13.0%}"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"  load average at the end: {load} on {os.cpu_count()} CPUs; code {common.code_version()}"
    )
    result = {
        "connections": n,
        "database": database,
        "broker": broker,
        "concurrency": args.concurrency,
        "plain_loop": plain,
        "runs": runs,
        "event_to_delivery_seconds": latencies,
        "recording": share,
        "load_average": os.getloadavg(),
    }
    (VAR / "polling-result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"  (written to {(VAR / 'polling-result.json').relative_to(ROOT)}; logs in var/bench/)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
