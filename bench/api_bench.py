"""Runtime API benchmark: how many requests a second gunicorn answers on the
credentials endpoint (GET /api/v1/connections/{id}/credentials, audited),
next to the lightest authenticated endpoint (GET /api/v1/me), under wrk on
loopback. See bench/README.md.

    .venv/bin/python bench/api_bench.py [--rounds 10] [--duration 4] [--connections 16] ...

PostgreSQL when DATABASE_URL is set (a database of the bench's own on that
server), else a SQLite file under var/bench; Redis (a database of the
bench's own) as the cache, where the per-key rate limit counts, when
REDIS_URL is set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # bench/common.py, next to this file
from common import ROOT, VAR

GOAL = 0.7  # credentials requests/s at least this share of the bare endpoint's
RATE_LIMIT = "1000000000/m"  # PORTAL_API_RATE_LIMIT for the run: never reached
WRK = "/usr/bin/wrk"


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    path: str
    audited: bool
    # Served by the second gunicorn, run with PORTAL_AUDIT_SYNCHRONOUS=1
    # (PostgreSQL only): every read waits for its audit record's flush.
    synchronous: bool = False


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--web-workers",
        type=int,
        default=2 * (os.cpu_count() or 2),
        help="gunicorn sync workers (2 x CPUs: %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=4, help="seconds per run (4)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="rounds over the endpoints, the order reversed every other round (10)",
    )
    parser.add_argument(
        "--warmup", type=float, default=3, help="unmeasured seconds per endpoint first (3)"
    )
    parser.add_argument(
        "--pause", type=float, default=1, help="seconds between runs, for the in-flight ones (1)"
    )
    parser.add_argument(
        "--folder-connections",
        type=int,
        default=300,
        help="connections in the robot's folder, besides the two measured (300)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="audit records already there, as on a portal in use (20000)",
    )
    parser.add_argument(
        "--inprocess",
        type=int,
        default=200,
        help="requests per endpoint timed in-process, without HTTP (200; 0: skip)",
    )
    parser.add_argument("--show-queries", action="store_true", help="print each endpoint's SQL")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=60,
        help="PORTAL_DB_CONN_MAX_AGE (60, as .env.example suggests)",
    )
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database (13)")
    parser.add_argument("--database", default="portal_api_bench", help="PostgreSQL database name")
    args = parser.parse_args()
    if args.connections < args.threads:
        parser.error("wrk needs at least as many connections as threads")
    return args


# --- wrk --------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and allowed to."""
    found = WRK if os.access(WRK, os.X_OK) else shutil.which("wrk")
    if found:
        return found
    how = "install it with `apt-get install -y wrk` (Debian, Ubuntu) or `brew install wrk`"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"The API benchmark loads the portal with wrk, which is missing: {how}.")
    print("wrk is missing: installing it with apt-get install -y wrk")
    quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=quiet)  # noqa: S607
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=quiet)  # noqa: S607
    found = WRK if os.access(WRK, os.X_OK) else shutil.which("wrk")
    if not found:
        raise SystemExit(f"wrk could not be installed: {how}.")
    return found


# Sends the key and a job id on every request, counts the answers that are
# not 2xx (wrk itself counts only 4xx and 5xx), and prints one line of
# figures in microseconds that the bench reads. wrk --latency prints its
# usual summary before it, kept in the log.
LUA = """
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.headers["X-Job-Id"] = "%(job)s"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "WRK-RESULT requests=%%d duration_us=%%d p50_us=%%d p75_us=%%d p90_us=%%d p99_us=%%d " ..
    "max_us=%%d non2xx=%%d connect=%%d read=%%d write=%%d timeout=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency.max, bad,
    e.connect, e.read, e.write, e.timeout))
end
"""


def run_wrk(wrk: str, url: str, key: str, job: str, seconds: float, args, log: Path) -> dict:
    """One wrk run; its figures, and the CPU seconds wrk used."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="api-bench-", delete=False) as lua:
        lua.write(LUA % {"key": key, "job": job})
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [wrk, "-t", str(args.threads), "-c", str(args.connections),
                   "-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "--latency",
                   "-s", lua.name, url]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(lua.name)
    with open(log, "a") as handle:
        handle.write(f"$ wrk ... {url}  (job {job})\n{done.stdout}{done.stderr}\n")
    found = re.search(r"WRK-RESULT (.*)", done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures = {k: int(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "timeout"))
    figures["seconds"] = figures["duration_us"] / 1e6
    figures["rate"] = figures["requests"] / figures["seconds"]
    figures["wrk_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return figures


# --- Seeding ----------------------------------------------------------------------------

FOLDER_TREE = {
    "Operations": {
        "Finance": {"Accounts payable": {}, "Treasury": {}},
        "HR": {"Payroll": {}, "Recruiting": {}},
        "Engineering": {"Platform": {}, "Releases": {}},
    },
    "Sales": {"EMEA": {}, "Americas": {}},
}
# Connector, auth type, secret: the mix of the folder's other connections.
MIX = [
    ("github", "pat", lambda: {"token": "ghp_" + secrets.token_urlsafe(27)}),
    ("slack", "oauth2_authorization_code", None),
    ("jira", "oauth2_authorization_code", None),
    ("salesforce", "oauth2_authorization_code", None),
    ("sandbox", "pat", lambda: {"token": secrets.token_urlsafe(30)}),
    ("sandbox", "oauth2_authorization_code", None),
]


def _oauth_secret(expires) -> dict:
    return {
        "access_token": secrets.token_urlsafe(40),
        "token_type": "Bearer",
        "refresh_token": secrets.token_urlsafe(40),
        "expires_at": int(expires.timestamp()),
        "scope": "profile records.read",
    }


def _make_folders(tree: dict, parent, made: dict, prefix: str = "") -> None:
    from portal.models import Folder

    for name, children in tree.items():
        folder = Folder.objects.create(name=name, kind=Folder.Kind.SHARED, parent=parent)
        made[prefix + name] = folder
        _make_folders(children, folder, made, f"{prefix}{name}/")


def seed(folder_connections: int, history: int) -> dict:
    """A shared folder tree; people with roles on it; a robot account with
    "Automation User" on Operations/Finance and an API key limited to that
    folder; a few hundred connections in Operations/Finance/Accounts payable,
    among them the two measured: a GitHub PAT and a Sandbox OAuth 2.0
    connection whose access token is valid for hours; older audit records."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from connections import vault
    from connections.models import Connection, ConnectionState, Credential
    from portal import api_keys
    from portal.models import AuditRecord, Role, RoleAssignment

    User = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        admin = User.objects.create_superuser("bench-admin", email="admin@example.com")
        folders: dict = {}
        _make_folders(FOLDER_TREE, None, folders)
        roles = {role.name: role for role in Role.objects.all()}
        people = [
            ("fiona", "Operations", "Folder Administrator"),
            ("dev", "Operations/Finance", "Automation Developer"),
            ("uma", "Operations/HR", "Automation User"),
            ("vic", "Operations", "Viewer"),
            ("sam", "Sales", "Automation Developer"),
        ]
        for username, path, role in people:
            user = User.objects.create_user(username, email=f"{username}@example.com")
            RoleAssignment.objects.create(
                folder=folders[path], role=roles[role], user=user, created_by=admin
            )
        robot = api_keys.create_robot(
            name="invoice-bot", description="Pays approved invoices.", actor=admin
        )
        finance = folders["Operations/Finance"]
        RoleAssignment.objects.create(
            folder=finance, role=roles["Automation User"], user=robot.user, created_by=admin
        )
        issued = api_keys.issue(
            owner=robot.user, name="invoice runs", days=30, folder=finance, actor=admin
        )
        dev = User.objects.get(username="dev")

        home = folders["Operations/Finance/Accounts payable"]
        hours = now + timedelta(hours=6)
        pat = Connection.objects.create(
            folder=home,
            connector_key="github",
            auth_type="pat",
            name="GitHub invoices bot",
            state=ConnectionState.CONNECTED,
            account_identity="invoices-bot",
            created_by=dev,
            authenticated_by=dev,
            last_checked_at=now,
            last_success_at=now,
        )
        vault.store_secret(pat, {"token": "ghp_" + secrets.token_urlsafe(27)})
        oauth = Connection.objects.create(
            folder=home,
            connector_key="sandbox",
            auth_type="oauth2_authorization_code",
            name="Sandbox ledger",
            state=ConnectionState.CONNECTED,
            token_expires_at=hours,
            account_identity="dev",
            created_by=dev,
            authenticated_by=dev,
            last_checked_at=now,
            last_success_at=now,
        )
        vault.store_secret(oauth, _oauth_secret(hours))

        others = []
        for i in range(folder_connections):
            connector, auth_type, secret = MIX[i % len(MIX)]
            others.append(
                Connection(
                    folder=home,
                    connector_key=connector,
                    auth_type=auth_type,
                    name=f"{connector} {i:04d}",
                    state=ConnectionState.CONNECTED,
                    token_expires_at=None if secret else hours,
                    created_by=dev,
                    authenticated_by=dev,
                )
            )
        others = Connection.objects.bulk_create(others, batch_size=500)
        credentials = []
        for i, connection in enumerate(others):
            secret = MIX[i % len(MIX)][2]
            ciphertext, key_id = vault.seal(
                secret() if secret else _oauth_secret(hours),
                aad=vault.credential_aad(connection.pk),
            )
            credentials.append(
                Credential(connection_id=connection.pk, ciphertext=ciphertext, key_id=key_id)
            )
        Credential.objects.bulk_create(credentials, batch_size=500)

        AuditRecord.objects.bulk_create(
            [
                AuditRecord(
                    action=AuditRecord.Action.CREDENTIALS_READ,
                    actor=robot.user,
                    actor_name=robot.user.username,
                    api_key=issued.key,
                    api_key_name=f"{issued.key.name} ({issued.key.hint}…)",
                    folder=home,
                    target_type="connection",
                    target_id=str(others[i % len(others)].pk if others else pat.pk),
                    target_name="earlier run",
                    job_id=f"history-{i // 10}",
                    ip_address="10.0.0.7",
                    detail="pat of github",
                )
                for i in range(history)
            ],
            batch_size=1000,
        )
    return {
        "key": issued.raw,
        "pat": pat.pk,
        "oauth": oauth.pk,
        "folder": "Operations/Finance/Accounts payable",
        "connections": folder_connections + 2,
    }


# --- In-process: SQL per request ------------------------------------------------------------


def in_process(endpoints: list[Endpoint], key: str, repeat: int) -> dict:
    """Each endpoint through Django's test client, no HTTP: the SQL of one
    request (after one unmeasured request, as in a warm worker), and the
    milliseconds per request over ``repeat`` requests."""
    from contextlib import ExitStack

    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(
        HTTP_HOST="127.0.0.1",
        headers={"Authorization": f"Bearer {key}", "X-Job-Id": "api-bench-in-process"},
    )
    found = {}
    for endpoint in endpoints:
        if endpoint.synchronous:  # the same requests as the asynchronous one
            continue
        first = client.get(endpoint.path)
        if first.status_code != 200:
            raise SystemExit(f"{endpoint.path}: {first.status_code} {first.content[:300]!r}")
        with ExitStack() as stack:
            # Every connection: the audit record has one of its own on PostgreSQL.
            captures = [
                stack.enter_context(CaptureQueriesContext(connections[alias]))
                for alias in connections
            ]
            client.get(endpoint.path)
        sql = [query["sql"] for captured in captures for query in captured.captured_queries]
        kinds: dict[str, int] = {}
        for statement in sql:
            verb = statement.lstrip(" (").split(None, 1)[0].upper()
            kinds[verb] = kinds.get(verb, 0) + 1
        ms = None
        if repeat:
            began = time.perf_counter()
            for _ in range(repeat):
                client.get(endpoint.path)
            ms = (time.perf_counter() - began) * 1000 / repeat
        found[endpoint.key] = {"queries": len(sql), "kinds": kinds, "sql": sql, "ms": ms}
    return found


# --- Main ---------------------------------------------------------------------------------


def clear_cache_keys(redis_url: str, prefix: str) -> None:
    """The bench's own keys in its own Redis database (rate-limit counters
    of an earlier run); nothing else is touched."""
    if not redis_url:
        return
    import redis

    client = redis.Redis.from_url(redis_url)
    stale = list(client.scan_iter(match=f"{prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


def check_answers(base: str, endpoints: list[Endpoint], key: str) -> None:
    import requests

    for endpoint in endpoints:
        answer = requests.get(
            base + endpoint.path,
            headers={"Authorization": f"Bearer {key}", "X-Job-Id": "api-bench-check"},
            timeout=30,
        )
        if answer.status_code != 200:
            raise SystemExit(
                f"GET {endpoint.path}: {answer.status_code} {answer.text[:500]} "
                "(see var/bench/api-gunicorn.log)"
            )


def audits_for(job: str) -> int:
    from portal.models import AuditRecord

    return AuditRecord.objects.filter(
        action=AuditRecord.Action.CREDENTIALS_READ, job_id=job
    ).count()


def summarise(runs: list[dict]) -> dict:
    requests = sum(run["requests"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    cpu = {
        name: sum(run["cpu"][name] for run in runs) * 1000 / max(requests, 1)
        for name in runs[0]["cpu"]
    }
    return {
        "requests": requests,
        "seconds": seconds,
        "rate": requests / seconds if seconds else 0.0,
        "p50_ms": sum(run["p50_us"] for run in runs) / len(runs) / 1000,
        "p99_ms": sum(run["p99_us"] for run in runs) / len(runs) / 1000,
        "non2xx": sum(run["non2xx"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "cpu_ms": cpu,
    }


def main() -> int:
    args = parse_args()
    common.stop_on_sigterm()
    wrk = ensure_wrk()
    (VAR / "staticfiles").mkdir(parents=True, exist_ok=True)  # WhiteNoise looks there
    port = common.free_port()
    database_url, database = common.fresh_database(args.database, "api-bench.sqlite3")
    pg_name = args.database if database_url.startswith("postgres") else ""
    redis_url = common.redis_database(args.redis_db)
    prefix = "apibench"
    clear_cache_keys(redis_url, prefix)
    cache = f"Redis (database {args.redis_db})" if redis_url else "per-process memory"
    env = common.environment(
        port=port,
        database_url=database_url,
        redis_url=redis_url,
        conn_max_age=args.conn_max_age,
        cache_prefix=prefix,
        extra={"PORTAL_API_RATE_LIMIT": RATE_LIMIT},
    )
    common.setup_django(env)
    from django.core.management import call_command

    load_before = os.getloadavg()
    code = common.code_version()
    print(f"API benchmark: {database}, cache {cache}; code {code}")
    print(
        f"  PORTAL_API_RATE_LIMIT={RATE_LIMIT} for this run (production default 600/m): "
        "the bench measures throughput; the rate limit is still counted on every request"
    )
    began = time.monotonic()
    call_command("migrate", verbosity=0)
    seeded = seed(args.folder_connections, args.history)
    print(
        f"  set up (migrate, {seeded['connections']} connections in {seeded['folder']}, "
        f"{args.history} audit records) in {time.monotonic() - began:.1f} s"
    )
    endpoints = [
        Endpoint("me", "bare: /api/v1/me", "/api/v1/me", False),
        Endpoint(
            "oauth",
            "credentials, OAuth 2.0",
            f"/api/v1/connections/{seeded['oauth']}/credentials",
            True,
        ),
        Endpoint(
            "pat", "credentials, PAT", f"/api/v1/connections/{seeded['pat']}/credentials", True
        ),
    ]
    if pg_name:  # on SQLite PORTAL_AUDIT_SYNCHRONOUS changes nothing
        endpoints += [
            Endpoint(f"{e.key}_sync", f"{e.label}, sync audit", e.path, True, True)
            for e in endpoints[1:]
        ]
    width = max(len(endpoint.label) for endpoint in endpoints) + 2
    measured = in_process(endpoints, seeded["key"], args.inprocess)
    for endpoint in endpoints:
        if endpoint.synchronous:
            measured[endpoint.key] = {**measured[endpoint.key[: -len("_sync")]], "ms": None}

    base = f"http://127.0.0.1:{port}"
    log = VAR / "api-gunicorn.log"
    wrk_log = VAR / "api-wrk.log"
    wrk_log.write_text("")
    runs: dict[str, list[dict]] = {endpoint.key: [] for endpoint in endpoints}
    web = web_sync = None
    sync_port = common.free_port()
    sync_base = f"http://127.0.0.1:{sync_port}"

    def base_of(endpoint: Endpoint) -> str:
        return sync_base if endpoint.synchronous else base

    try:
        web = common.gunicorn(port, args.web_workers, env, log)
        common.wait_for_http(base + "/api/v1/me", web, log)
        if pg_name:
            sync_env = {**env, "PORTAL_AUDIT_SYNCHRONOUS": "1", "PORT": str(sync_port)}
            sync_log = VAR / "api-gunicorn-sync.log"
            web_sync = common.gunicorn(sync_port, args.web_workers, sync_env, sync_log)
            common.wait_for_http(sync_base + "/api/v1/me", web_sync, sync_log)
        for endpoint in endpoints:
            check_answers(base_of(endpoint), [endpoint], seeded["key"])
        print(
            f"  gunicorn: {args.web_workers} sync workers on {base}; wrk: {args.threads} threads, "
            f"{args.connections} connections, {args.duration:g} s a run, {args.rounds} rounds"
        )
        for endpoint in endpoints:  # every worker loads what each endpoint needs
            run_wrk(wrk, base_of(endpoint) + endpoint.path, seeded["key"], "api-bench-warm-up",
                    args.warmup, args, wrk_log)  # fmt: skip
        for round_ in range(1, args.rounds + 1):
            order = endpoints if round_ % 2 else endpoints[::-1]
            for endpoint in order:
                job = f"api-bench-r{round_}-{endpoint.key}"
                cpu_before, machine_before = common.cpu_snapshot(pg_name), common.machine_cpu()
                run = run_wrk(wrk, base_of(endpoint) + endpoint.path, seeded["key"], job,
                              args.duration, args, wrk_log)  # fmt: skip
                time.sleep(args.pause)  # requests in flight when wrk stopped finish
                used = common.cpu_used(cpu_before, common.cpu_snapshot(pg_name))
                busy, total = (
                    b - a for a, b in zip(machine_before, common.machine_cpu(), strict=True)
                )
                run.update(
                    round=round_,
                    job=job,
                    audits=audits_for(job) if endpoint.audited else None,
                    machine_busy=busy / total if total else 0.0,
                    cpu={
                        "gunicorn": used.get((web_sync if endpoint.synchronous else web).pid, 0.0),
                        # Only the servers this run uses (SQLite runs in gunicorn).
                        "postgres": used.get("postgres", 0.0) if pg_name else 0.0,
                        "redis": used.get("redis-server", 0.0) if redis_url else 0.0,
                        "wrk": run["wrk_cpu"],
                    },
                )
                runs[endpoint.key].append(run)
                print(
                    f"    round {round_}  {endpoint.label:{width}} {run['rate']:>8.1f} req/s  "
                    f"p50 {run['p50_us'] / 1000:>6.1f} ms  p99 {run['p99_us'] / 1000:>6.1f} ms  "
                    f"non-2xx {run['non2xx']}"
                )
    except KeyboardInterrupt:
        print("\nInterrupted: stopping gunicorn.")
        return 130
    finally:
        for server in (web, web_sync):
            if server is not None:
                common.stop(server)

    totals = {key: summarise(found) for key, found in runs.items()}
    bare = totals["me"]["rate"]
    print()
    print(
        f"  {'':{width}} {'requests/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} "
        f"{'SQL/req':>8} {'in-process ms':>13}"
    )
    for endpoint in endpoints:
        total, sql = totals[endpoint.key], measured[endpoint.key]
        inproc = f"{sql['ms']:.2f}" if sql["ms"] is not None else "-"
        print(
            f"  {endpoint.label:{width}} {total['rate']:>10.1f} {total['p50_ms']:>7.1f} "
            f"{total['p99_ms']:>7.1f} {total['non2xx'] + total['errors']:>8} "
            f"{sql['queries']:>8} {inproc:>13}"
        )
    print(
        f"  (requests/s over all {args.rounds} rounds; p50 and p99 the mean of the rounds'; "
        "non-2xx includes socket errors and timeouts)"
    )
    print()
    verdicts = {}
    for key in [e.key for e in endpoints if e.audited]:
        ratio = totals[key]["rate"] / bare if bare else 0.0
        rounds = [cred["rate"] / me["rate"] for cred, me in zip(runs[key], runs["me"], strict=True)]
        # What the CPU each request costs on this machine (gunicorn, the
        # database's backends, Redis, wrk) predicts: steadier than requests/s
        # when other programs take CPU at random moments.
        by_cpu = sum(totals["me"]["cpu_ms"].values()) / sum(totals[key]["cpu_ms"].values())
        verdicts[key] = {
            "ratio": ratio,
            "by_round": rounds,
            "median_of_rounds": statistics.median(rounds),
            "by_cpu": by_cpu,
            "pass": ratio >= GOAL,
        }
        label = next(e.label for e in endpoints if e.key == key)
        # The goal is the portal's as shipped; the synchronous figure is beside it.
        verdict = "reported" if key.endswith("_sync") else ("PASS" if ratio >= GOAL else "MISS")
        print(
            f"  {label} / bare: {ratio:.2f} (goal at least {GOAL}): "
            f"{verdict}  (by round: "
            + ", ".join(f"{r:.2f}" for r in rounds)
            + f"; from the CPU per request: {by_cpu:.2f})"
        )

    audit_ok = True
    written = answered = 0
    for key in [e.key for e in endpoints if e.audited]:
        for run in runs[key]:
            ok = run["requests"] - run["non2xx"]
            written += run["audits"]
            answered += ok
            if not 0 <= run["audits"] - ok <= args.connections:
                audit_ok = False
    print(
        f"  audit records written during the credentials runs: {written}; 2xx answers wrk "
        f"counted: {answered}; difference {written - answered} (the requests in flight when wrk "
        f"stopped, at most {args.connections} a run): {'OK' if audit_ok else 'MISMATCH'}"
    )
    print("  SQL per request (in-process, Django's CaptureQueriesContext, warm):")
    for endpoint in endpoints:
        sql = measured[endpoint.key]
        kinds = ", ".join(f"{n} {verb}" for verb, n in sorted(sql["kinds"].items()))
        print(f"    {endpoint.label:{width}} {sql['queries']:>3}  ({kinds})")
        if args.show_queries:
            for statement in sql["sql"]:
                print(f"        {statement[:160]}")
    print(
        f"  {'CPU ms per request:':{width + 2}} gunicorn  PostgreSQL  Redis    wrk   machine busy"
    )
    print("    (PostgreSQL: the bench database's backends; Redis: the whole server)")
    for endpoint in endpoints:
        cpu = totals[endpoint.key]["cpu_ms"]
        busy = sum(run["machine_busy"] for run in runs[endpoint.key]) / len(runs[endpoint.key])
        postgres = f"{cpu['postgres']:.2f}" if pg_name else "-"
        redis = f"{cpu['redis']:.2f}" if redis_url else "-"
        print(
            f"    {endpoint.label:{width}} {cpu['gunicorn']:>6.2f} {postgres:>11} {redis:>6} "
            f"{cpu['wrk']:>6.2f} {busy:>14.0%}"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"  load average: {load_before[0]:.1f} before set-up, {load} at the end, "
        f"on {os.cpu_count()} CPUs"
    )
    if load_before[0] > (os.cpu_count() or 1) / 2:
        print(
            "  The machine was busy before the bench started: requests/s move with the other "
            "programs' load (see the ratio by round); the ratio from the CPU per request is "
            "steadier. Run on a quiet machine for requests/s that mean something."
        )

    failed = sum(t["non2xx"] + t["errors"] for t in totals.values())
    result = {
        "code": code,
        "database": database,
        "cache": cache,
        "rate_limit": RATE_LIMIT,
        "web_workers": args.web_workers,
        "wrk": {
            "threads": args.threads,
            "connections": args.connections,
            "duration": args.duration,
            "rounds": args.rounds,
        },
        "endpoints": {e.key: e.path for e in endpoints},
        "totals": totals,
        "runs": runs,
        "ratios": verdicts,
        "goal": GOAL,
        "audit": {"written": written, "answered": answered, "ok": audit_ok},
        "in_process": measured,
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    out = VAR / "api-result.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        f"  (written to {out.relative_to(ROOT)}; logs: var/bench/api-gunicorn.log, "
        "var/bench/api-wrk.log)"
    )
    return 1 if failed or not audit_ok else 0


if __name__ == "__main__":
    sys.exit(main())
