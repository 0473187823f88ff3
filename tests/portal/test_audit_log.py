"""The audit log page: who may read which records, its filters, a constant
number of queries per page at 100,000 records, the CSV export (streamed,
filtered, formulas defused), and the retention that prunes old records."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal import audit, audit_log
from portal.models import AuditRecord
from tests.factories import assign

pytestmark = pytest.mark.django_db

URL = "/audit/"
CSV_URL = "/audit/export.csv"


def add(action=AuditRecord.Action.CONNECTION_EDITED, *, folder=None, actor=None, **extra):
    audit.record(action, actor=actor, folder=folder, **extra)
    return AuditRecord.objects.latest("pk")


def shown(client, params=None) -> list[str]:
    response = client.get(URL, params or {})
    assert response.status_code == 200, response.content[:500]
    return [record.target_name for record in response.context["page"].object_list]


@pytest.fixture
def records(tree, make_user, tenant_admin):
    ada, bob = make_user("ada"), make_user("bob")
    add(folder=tree["finance"], actor=ada, target=("connection", 1, "Ledger"))
    add(folder=tree["payables"], actor=bob, target=("connection", 2, "Invoices"))
    add(folder=tree["hr"], actor=ada, target=("connection", 3, "People"))
    add(AuditRecord.Action.GOVERNANCE_CHANGED, actor=tenant_admin, target=("", "", "Tenant"))
    return {"ada": ada, "bob": bob}


def test_tenant_administrators_read_every_record(client, tenant_admin, records):
    client.force_login(tenant_admin)
    assert shown(client) == ["Tenant", "People", "Invoices", "Ledger"]


def test_folder_administrators_read_their_folders_and_below(client, tree, make_user, records):
    boss = make_user("boss")
    assign(boss, tree["finance"], "Folder Administrator")
    client.force_login(boss)
    assert shown(client) == ["Invoices", "Ledger"]
    # A folder they do not administer is no choice: refused, nothing of it shown.
    response = client.get(URL, {"folder": tree["hr"].pk})
    assert response.status_code == 400 and "People" not in response.content.decode()
    assert client.get(CSV_URL, {"folder": tree["hr"].pk}).status_code == 400


@pytest.mark.parametrize("role", ["Automation Developer", "Automation User", "Viewer", None])
def test_anyone_else_is_refused(client, tree, make_user, records, role):
    user = make_user("someone")
    if role:
        assign(user, tree["finance"], role)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    assert client.get(CSV_URL).status_code == 403


def test_filters(client, tree, tenant_admin, records):
    client.force_login(tenant_admin)
    assert shown(client, {"folder": tree["finance"].pk}) == ["Invoices", "Ledger"]
    assert shown(client, {"connection": 2}) == ["Invoices"]
    assert shown(client, {"actor": "ADA"}) == ["People", "Ledger"]
    assert shown(client, {"action": AuditRecord.Action.GOVERNANCE_CHANGED}) == ["Tenant"]
    assert shown(client, {"q": "invo"}) == ["Invoices"]
    AuditRecord.objects.filter(target_name="Ledger").update(
        created_at=timezone.now() - timedelta(days=10)
    )
    today = timezone.localdate()
    assert "Ledger" not in shown(client, {"since": today.isoformat()})
    old = (today - timedelta(days=10)).isoformat()
    assert shown(client, {"since": old, "until": old}) == ["Ledger"]


def test_a_reversed_range_is_refused_with_a_message(client, tenant_admin, records):
    client.force_login(tenant_admin)
    response = client.get(URL, {"since": "2026-12-06", "until": "2026-12-01"})
    assert response.status_code == 400
    assert "The end of the range is before its start." in response.content.decode()
    assert client.get(CSV_URL, {"since": "2026-12-06", "until": "2026-12-01"}).status_code == 400


def test_the_csv_is_streamed_filtered_and_defuses_formulas(client, tree, tenant_admin, records):
    add(folder=tree["finance"], actor=records["ada"], target=("connection", 9, "=HYPERLINK(1)"))
    client.force_login(tenant_admin)
    response = client.get(CSV_URL, {"folder": tree["finance"].pk})
    assert response.streaming and response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(audit_log.CSV_COLUMNS)
    assert [row[6] for row in rows[1:]] == ["'=HYPERLINK(1)", "Invoices", "Ledger"]
    assert {row[7] for row in rows[1:]} == {"Finance", "Payables"}


def test_a_page_costs_the_same_queries_at_100000_records(client, tree, tenant_admin):
    client.force_login(tenant_admin)
    for i in range(60):
        add(folder=tree["finance"], target=("connection", i, f"c{i}"))
    with CaptureQueriesContext(db) as few:
        client.get(URL, {"folder": tree["shared"].pk, "page": 2})
    AuditRecord.objects.bulk_create(
        [
            AuditRecord(
                action=AuditRecord.Action.CREDENTIALS_READ,
                folder_id=tree["payables"].pk,
                target_type="connection",
                target_id=str(i % 500),
                target_name=f"c{i % 500}",
            )
            for i in range(100_000)
        ],
        batch_size=5000,
    )
    with CaptureQueriesContext(db) as many:
        response = client.get(URL, {"folder": tree["shared"].pk, "page": 2})
    assert response.context["page"].paginator.count == 100_060
    assert len(many) == len(few)


def test_retention_prunes_old_records_and_records_that_it_did(tree, settings):
    old = add(folder=tree["finance"], target=("connection", 1, "Old"))
    AuditRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    add(folder=tree["finance"], target=("connection", 2, "Recent"))
    settings.PORTAL_AUDIT_RETENTION_DAYS = 365
    out = io.StringIO()
    call_command("prune_audit", stdout=out)
    assert "Deleted 1 audit record(s)." in out.getvalue()
    names = set(AuditRecord.objects.values_list("target_name", flat=True))
    assert "Old" not in names and "Recent" in names
    pruned = AuditRecord.objects.get(action=AuditRecord.Action.AUDIT_PRUNED)
    assert pruned.detail.startswith("1 record(s) older than 365 days")
    # 0 keeps everything.
    settings.PORTAL_AUDIT_RETENTION_DAYS = 0
    assert audit_log.prune() == 0


def test_the_admin_neither_changes_nor_deletes_records(client, tenant_admin, records):
    client.force_login(tenant_admin)
    record = AuditRecord.objects.first()
    change = client.post(f"/admin/portal/auditrecord/{record.pk}/change/", {"detail": "x"})
    delete = client.post(f"/admin/portal/auditrecord/{record.pk}/delete/", {"post": "yes"})
    assert change.status_code in {302, 403} and delete.status_code == 403
    assert AuditRecord.objects.filter(pk=record.pk, detail="").exists()
