"""Token refresh benchmark: how fast the sweep and real Celery workers refresh
N connections whose tokens are about to expire, next to how fast a plain HTTP
client loop refreshes against the same server. See bench/README.md.

    .venv/bin/python bench/refresh_bench.py [--connections 10000] ...

PostgreSQL when DATABASE_URL is set (a database of the bench's own on that
server), else a SQLite file under var/bench; Redis when REDIS_URL is set (a
Redis database of the bench's own), else the embedded filesystem broker.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/common.py, next to this file
from common import ROOT, VAR

SCOPE = "profile records.read"
LIFETIME_BEFORE = 60  # seconds left on the seeded access tokens: due (lead time 300 s)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000, help="N (10000)")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn workers (4)")
    parser.add_argument("--celery-workers", type=int, default=1, help="worker processes (1)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="pool processes per Celery worker (4)"
    )
    parser.add_argument(
        "--client-loops",
        type=int,
        default=0,
        help="parallel loops of the plain client (default: as many as Celery pool processes)",
    )
    parser.add_argument(
        "--baseline-refreshes",
        type=int,
        default=0,
        help="grants the plain client spends, half before and half after (N/5, at least 1000)",
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=20, help="cap on each plain client run (20 s)"
    )
    parser.add_argument("--batch", type=int, default=0, help="sweep batch (default: N)")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="PORTAL_DB_CONN_MAX_AGE for every process (60, as .env.example suggests)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="give up after (1800 s)")
    parser.add_argument("--redis-db", type=int, default=12, help="Redis database (12)")
    parser.add_argument("--database", default="portal_bench", help="PostgreSQL database name")
    return parser.parse_args()


# --- Environment ---------------------------------------------------------------


def environment(args, port: int, database_url: str, redis_url: str) -> dict[str, str]:
    return common.environment(
        port=port,
        database_url=database_url,
        redis_url=redis_url,
        conn_max_age=args.conn_max_age,
        extra={
            # One sweep enqueues every due connection, all at once (no jitter):
            # the bench measures throughput, not the pacing of a real beat.
            "PORTAL_REFRESH_BATCH": str(args.batch or args.connections),
            "PORTAL_REFRESH_JITTER_SECONDS": "0",
        },
    )


# --- Seeding ----------------------------------------------------------------------


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def seed(connections: int, baseline: int) -> dict:
    """The Sandbox app, N connections holding live grants at the Sandbox
    provider (DOT token rows made in bulk, the same token sets sealed into the
    connections with the vault), and spare grants for the plain client."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone
    from oauth2_provider.models import (
        get_access_token_model,
        get_application_model,
        get_refresh_token_model,
    )

    from connections import vault
    from connections.models import Connection, ConnectionState, Credential
    from connections.oauth_apps import portal_app
    from connections.sandbox_provider import SANDBOX_CLIENT_ID, ensure_portal_app
    from portal.models import Folder

    AccessToken, RefreshToken = get_access_token_model(), get_refresh_token_model()
    ensure_portal_app()
    app = get_application_model().objects.get(client_id=SANDBOX_CLIENT_ID)
    client = portal_app("sandbox")
    now = timezone.now()
    expires = now + timedelta(seconds=LIFETIME_BEFORE)
    with transaction.atomic():
        user = get_user_model().objects.create_user("bench", email="bench@example.com")
        folder = Folder.objects.create(name="Benchmark", kind=Folder.Kind.SHARED)
        total = connections + baseline
        raw = [(secrets.token_urlsafe(30), secrets.token_urlsafe(30)) for _ in range(total)]
        access = AccessToken.objects.bulk_create(
            [
                AccessToken(
                    user=user,
                    application=app,
                    token="",
                    token_checksum=_checksum(a),
                    expires=expires,
                    scope=SCOPE,
                )
                for a, _ in raw
            ],
            batch_size=1000,
        )
        families = [uuid.uuid4() for _ in range(total)]
        RefreshToken.objects.bulk_create(
            [
                RefreshToken(
                    user=user,
                    application=app,
                    token="",
                    token_checksum=_checksum(r),
                    access_token=at,
                    token_family=family,
                )
                for (_, r), at, family in zip(raw, access, families, strict=True)
            ],
            batch_size=1000,
        )
        made = Connection.objects.bulk_create(
            [
                Connection(
                    folder=folder,
                    connector_key="sandbox",
                    name=f"Bench {i:06d}",
                    auth_type="oauth2_authorization_code",
                    state=ConnectionState.CONNECTED,
                    token_expires_at=expires,
                    account_identity=user.username,
                    created_by=user,
                    authenticated_by=user,
                )
                for i in range(connections)
            ],
            batch_size=1000,
        )
        credentials = []
        for connection, (a, r) in zip(made, raw[:connections], strict=True):
            secret = {
                "access_token": a,
                "token_type": "Bearer",
                "refresh_token": r,
                "expires_at": int(expires.timestamp()),
                "scope": SCOPE,
            }
            ciphertext, key_id = vault.seal(secret, aad=vault.credential_aad(connection.pk))
            credentials.append(
                Credential(connection_id=connection.pk, ciphertext=ciphertext, key_id=key_id)
            )
        Credential.objects.bulk_create(credentials, batch_size=1000)
    return {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "families": [str(f) for f in families[:connections]],
        "baseline_tokens": [r for _, r in raw[connections:]],
    }


# --- The two measurements --------------------------------------------------------------


def plain_client(url: str, client: tuple[str, str], tokens: list[str], loops: int, cap: float):
    """Refresh grants as fast as ``loops`` plain loops of HTTP requests can."""
    import requests

    pool, lock = deque(tokens), threading.Lock()
    counts = {"ok": 0, "failed": 0}
    deadline = time.monotonic() + cap

    def loop() -> None:
        session = requests.Session()
        session.auth = client
        while time.monotonic() < deadline:
            with lock:
                if not pool:
                    return
                token = pool.popleft()
            try:
                answer = session.post(
                    url, data={"grant_type": "refresh_token", "refresh_token": token}, timeout=30
                )
                ok = answer.status_code == 200 and "access_token" in answer.json()
            except (requests.RequestException, ValueError):
                ok = False
            with lock:
                counts["ok" if ok else "failed"] += 1

    threads = [threading.Thread(target=loop) for _ in range(loops)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["ok"], counts["failed"], time.monotonic() - began


def progress(threshold) -> tuple[int, int]:
    """(connections refreshed, connections broken), in one query."""
    from django.db.models import Count, Q

    from connections.models import Connection, ConnectionState

    counts = Connection.objects.aggregate(
        refreshed=Count("pk", filter=Q(token_expires_at__gt=threshold)),
        broken=Count("pk", filter=~Q(state=ConnectionState.CONNECTED)),
    )
    return counts["refreshed"], counts["broken"]


def celery_sweep(n: int, timeout: float) -> tuple[int, float]:
    """Send the sweep as beat would, let the workers refresh; (refreshed,
    seconds from sending the sweep to the last refresh's commit)."""
    from django.db.models import Max
    from django.utils import timezone

    from connections.models import ConnectionEvent
    from connections.tasks import refresh_sweep

    threshold = timezone.now() + timedelta(seconds=600)  # seeded tokens end within 60 s
    sent = timezone.now()
    began = time.monotonic()
    refresh_sweep.apply_async()
    last_report = began
    done = 0
    while time.monotonic() - began < timeout:
        time.sleep(0.5)  # polling lightly: the bench shares the CPUs it measures
        done, broken = progress(threshold)
        if done + broken >= n:
            break
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            elapsed = last_report - began
            print(f"  ... {done} refreshed after {elapsed:.0f} s ({done / elapsed:.1f}/s)")
    last = ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.REFRESHED).aggregate(
        last=Max("created_at")
    )["last"]
    seconds = (last - sent).total_seconds() if last else time.monotonic() - began
    return done, seconds


def audit(families: list[str], threshold_refreshed: int, n: int) -> dict:
    """Double refreshes and failures, from the portal's events and the provider's rows."""
    from django.db.models import Count
    from oauth2_provider.models import get_refresh_token_model

    from connections.models import Connection, ConnectionEvent, ConnectionState

    refreshed = ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.REFRESHED)
    twice_by_events = refreshed.values("connection").annotate(n=Count("pk")).filter(n__gt=1).count()
    # Each successful refresh grant adds a refresh token to the grant's family.
    twice_at_provider = (
        get_refresh_token_model()
        .objects.filter(token_family__in=families)
        .values("token_family")
        .annotate(n=Count("pk"))
        .filter(n__gt=2)
        .count()
    )
    grants = get_refresh_token_model().objects.filter(token_family__in=families).count() - n
    states = dict(
        Connection.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    failed_events = ConnectionEvent.objects.filter(kind=ConnectionEvent.Kind.REFRESH_FAILED).count()
    return {
        "double_refreshes_by_events": twice_by_events,
        "double_refreshes_at_provider": twice_at_provider,
        "refresh_grants_at_provider": grants,
        "not_refreshed": n - threshold_refreshed,
        "needs_reconnect": states.get(ConnectionState.NEEDS_RECONNECT, 0),
        "misconfigured": states.get(ConnectionState.MISCONFIGURED, 0),
        "refresh_failed_events": failed_events,
    }


# --- Main -------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    n = args.connections
    pool_processes = args.celery_workers * args.concurrency
    loops = args.client_loops or pool_processes
    baseline = args.baseline_refreshes or max(1000, n // 5)
    warmup = 10 * args.web_workers  # each web worker loads its code before the clock runs
    VAR.mkdir(parents=True, exist_ok=True)
    port = common.free_port()
    database_url, database = common.fresh_database(args.database, "bench.sqlite3")
    redis_url, broker = common.prepare_broker(args.redis_db)
    env = environment(args, port, database_url, redis_url)
    common.setup_django(env)
    from django.core.management import call_command

    print(f"Refresh benchmark: {n} connections, {database}, {broker}")
    began = time.monotonic()
    call_command("migrate", verbosity=0)
    seeded = seed(n, warmup + baseline)
    print(
        f"  set up (migrate, {n} + {warmup + baseline} grants) in {time.monotonic() - began:.1f} s"
    )

    token_url = f"http://127.0.0.1:{port}/sandbox/oauth/token/"
    processes: list[subprocess.Popen] = []
    try:
        web_log = VAR / "gunicorn.log"
        web = common.gunicorn(port, args.web_workers, env, web_log)
        processes.append(web)
        common.wait_for_http(token_url, web, web_log, method="POST")
        print(f"  provider: gunicorn, {args.web_workers} workers, {token_url}")

        client = (seeded["client_id"], seeded["client_secret"])
        spare = seeded["baseline_tokens"]
        plain_client(token_url, client, spare[:warmup], args.web_workers, args.baseline_seconds)
        half = warmup + baseline // 2
        pools = spare[warmup:half], spare[half:]

        def measure_plain(tokens: list[str]) -> dict:
            meter = common.CpuMeter(web.pid)
            ok, failed, seconds = plain_client(
                token_url, client, tokens, loops, args.baseline_seconds
            )
            return {
                "refreshed": ok,
                "failed": failed,
                "seconds": seconds,
                "rate": ok / seconds,
                "cpu_ms": meter.per_item(ok),
            }

        # The plain client before and after the workers' run, on the same
        # server: the spread shows how steady the machine was.
        plain = [measure_plain(pools[0])]

        for i in range(args.celery_workers):
            log = VAR / f"celery-worker-{i + 1}.log"
            worker = common.start(
                [sys.executable, "-m", "celery", "-A", "portal", "worker",
                 "-n", f"bench{i + 1}@%h", "-c", str(args.concurrency), "-l", "INFO",
                 "--without-mingle", "--without-gossip", "--without-heartbeat"],
                env,
                log,
            )  # fmt: skip
            processes.append(worker)
            common.wait_for_log(" ready.", worker, log)
        print(
            f"  Celery: {args.celery_workers} worker(s) x {args.concurrency} pool processes; "
            f"sweep batch {env['PORTAL_REFRESH_BATCH']}, jitter 0 s"
        )
        meter = common.CpuMeter(web.pid, [worker.pid for worker in processes[1:]])
        refreshed, seconds = celery_sweep(n, args.timeout)
        celery = {
            "refreshed": refreshed,
            "seconds": seconds,
            "rate": refreshed / seconds,
            "cpu_ms": meter.per_item(refreshed),
        }
        time.sleep(2)  # let any stray duplicate task finish before counting
        found = audit(seeded["families"], refreshed, n)
        for process in processes[1:]:
            common.stop(process)  # the workers: the plain client has the machine to itself again
        plain.append(measure_plain(pools[1]))
    finally:
        for process in reversed(processes):
            common.stop(process)

    double = max(found["double_refreshes_by_events"], found["double_refreshes_at_provider"])
    plain_failed = sum(run["failed"] for run in plain)
    failures = found["not_refreshed"] + found["needs_reconnect"] + found["misconfigured"]
    limit = max(run["rate"] for run in plain)  # the practical limit: the best plain rate
    ratio = celery["rate"] / limit if limit else 0.0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    def row(label: str, run: dict, failed: int) -> str:
        return (
            f"  {label:36} {run['refreshed']:>9} {run['seconds']:>8.1f} "
            f"{run['rate']:>11.1f} {failed:>7}"
        )

    print()
    print(f"  {'':36} {'refreshed':>9} {'seconds':>8} {'per second':>11} {'failed':>7}")
    print(row(f"plain HTTP client, {loops} loops, before", plain[0], plain[0]["failed"]))
    print(row("sweep + Celery workers", celery, n - celery["refreshed"]))
    print(row(f"plain HTTP client, {loops} loops, after", plain[1], plain[1]["failed"]))
    print()
    print(f"  refreshed per second: {celery['rate']:.1f} with Celery, {limit:.1f} plain")
    print(f"  Celery / plain client: {ratio:.2f} (goal: at least 0.5)")
    print(
        f"  double refreshes: {double} (connections refreshed more than once: "
        f"{found['double_refreshes_by_events']} by the portal's events, "
        f"{found['double_refreshes_at_provider']} by the provider's token rows; "
        f"{found['refresh_grants_at_provider']} refresh grants for {n} connections)"
    )
    print(
        f"  failures: {failures} (not refreshed {found['not_refreshed']}, needs reconnect "
        f"{found['needs_reconnect']}, misconfigured {found['misconfigured']}, refresh-failed "
        f"events {found['refresh_failed_events']}; plain client failures {plain_failed})"
    )
    print(f"  load average at the end: {load} on {os.cpu_count()} CPUs")
    print("  CPU ms per refresh:   provider  PostgreSQL  Redis  refreshing  bench  machine busy")
    for label, run in (("plain client", plain[0]), ("Celery", celery)):
        cpu = run["cpu_ms"]
        print(
            f"    {label:18} {cpu['provider']:>8.1f} {cpu['postgres']:>11.1f} "
            f"{cpu['redis']:>6.1f} {cpu['working']:>11.1f} {cpu['bench']:>6.1f} "
            f"{cpu['machine_busy']:>13.0%}"
        )
    result = {
        "connections": n,
        "database": database,
        "broker": broker,
        "web_workers": args.web_workers,
        "celery_workers": args.celery_workers,
        "concurrency": args.concurrency,
        "client_loops": loops,
        "plain_client": plain,
        "celery": celery,
        "ratio": ratio,
        "double_refreshes": double,
        "failures": failures,
        "load_average": os.getloadavg(),
        **found,
    }
    (VAR / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"  (written to {(VAR / 'result.json').relative_to(ROOT)}; logs in var/bench/)")
    return 1 if double or failures or plain_failed else 0


if __name__ == "__main__":
    sys.exit(main())
