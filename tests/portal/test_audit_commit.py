"""Credential reads are audited on a connection of their own that commits
without waiting for the WAL flush (PostgreSQL, unless
PORTAL_AUDIT_SYNCHRONOUS): the read is answered sooner, and the record is
still written, committed, before the answer. Every other audit record joins
the caller's transaction on the default connection. On SQLite, or with the
setting on, there is one connection.

The suite runs with PORTAL_AUDIT_SYNCHRONOUS on (a test may query only the
databases it names), so these run the portal's settings in a process of
their own, on the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from portal.models import AuditRecord
from tests.servers import ROOT, database_url, needs_a_shared_database

pytestmark = pytest.mark.django_db(transaction=True)

PROBE = r"""
import json, django
django.setup()
from django.conf import settings
from django.db import connections
from portal import audit
from portal.models import AuditRecord

def synchronous(alias):
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]

audit.record(AuditRecord.Action.CREDENTIALS_READ, target=("connection", 7, "Probe"))
audit.record(AuditRecord.Action.API_KEY_CREATED, target=("api_key", 8, "Probe key"))
print(json.dumps({
    "aliases": sorted(settings.DATABASES),
    "reads": audit.READS_DATABASE,
    "sync": {alias: synchronous(alias) for alias in sorted(settings.DATABASES)},
}))
"""


def _probe(**env: str) -> dict:
    done = subprocess.run(  # noqa: S603 (our interpreter, fixed arguments)
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_reads_are_recorded_without_waiting_for_the_flush():
    needs_a_shared_database()
    seen = _probe(PORTAL_AUDIT_SYNCHRONOUS="0")
    assert seen == {
        "aliases": ["audit", "default"],
        "reads": "audit",
        "sync": {"audit": "off", "default": "on"},
    }
    # Both records are there, committed: the read's on its own connection.
    actions = set(AuditRecord.objects.values_list("action", flat=True))
    assert actions == {AuditRecord.Action.CREDENTIALS_READ, AuditRecord.Action.API_KEY_CREATED}


def test_with_the_setting_every_read_is_durable_before_it_is_answered():
    needs_a_shared_database()
    seen = _probe(PORTAL_AUDIT_SYNCHRONOUS="1")
    assert seen == {"aliases": ["default"], "reads": "default", "sync": {"default": "on"}}
    assert AuditRecord.objects.count() == 2
