"""A source folder holding what a solution is made of: a Sandbox
connection (with a stored secret), a process with a webhook (and its
signing secret) requiring it, and an event trigger between them; a
subfolder with a second connection required by a second process."""

from __future__ import annotations

import pytest

from connections.models import Process, ProcessConnection, Trigger
from connections.triggers.processes import create_process
from tests.factories import ConnectionFactory, assign

SECRET = {"token": "sbx_solutions_stored_secret_0001"}


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def world(tree):
    finance, payables = tree["finance"], tree["payables"]
    records = ConnectionFactory(
        folder=finance, sandbox=True, name="Records", description="The records", secret=SECRET
    )
    made = create_process(
        folder=finance,
        name="Invoices",
        webhook_url="https://robots.example.com/hooks/invoices",
        requirements={"sandbox": records},
    )
    trigger = Trigger.objects.create(
        connection=records,
        event_key="record_created",
        process=made.process,
        filters={"title_contains": "invoice"},
    )
    ledger = ConnectionFactory(
        folder=payables, sandbox=True, name="Ledger", secret={"token": "sbx_ledger_secret_0002"}
    )
    payments = Process.objects.create(folder=payables, name="Payments", job_queue=True)
    ProcessConnection.objects.create(process=payments, connector_key="sandbox", connection=ledger)
    return {
        "folder": finance,
        "records": records,
        "invoices": made.process,
        "signing_secret": made.signing_secret,
        "trigger": trigger,
        "ledger": ledger,
        "payments": payments,
        **tree,
    }


@pytest.fixture
def author(make_user, tree):
    user = make_user("author")
    assign(user, tree["finance"], "Automation Developer")
    return user


@pytest.fixture
def viewer(make_user, tree):
    user = make_user("viewer")
    assign(user, tree["finance"], "Viewer")
    return user
