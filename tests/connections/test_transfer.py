"""Moving connections out and in: export, then import into an empty
database; the second import changes nothing; malformed or unknown entries
are refused whole, naming the entry and field; a dry run writes nothing."""

from __future__ import annotations

import io
import json

import jsonschema
import pytest
from django.core.management import CommandError, call_command

from connections.models import (
    Connection,
    ConnectionState,
    Credential,
    Process,
    ProcessConnection,
    Trigger,
)
from connections.oauth_apps import set_portal_app
from connections.transfer import format as transfer_format
from connections.transfer.export import export_connections
from connections.transfer.format import DocumentRefused, parse
from connections.transfer.import_ import ImportRefused, import_connections, plan_import
from connections.triggers.configure import create_trigger
from connections.triggers.processes import create_process
from portal.models import AuditRecord, Folder
from tests import leak_guard
from tests.factories import ConnectionFactory, FolderFactory

PAT = {"token": "sbx_transfer_pat_secret_1"}
OWN_APP = {
    "client_id": "transfer-own-app-id",
    "client_secret": "transfer-own-app-client-secret",
    "access_token": "transfer-access-token-1",
    "refresh_token": "transfer-refresh-token-1",
}
ZENDESK = {"api_token": "zendesk-api-token-transfer"}


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def estate(tree, tenant_admin):
    """What a tenant holds: connections of three kinds with their secrets,
    a process with a webhook (its signing secret sealed) and one robots
    pull, and triggers."""
    finance, payables = tree["finance"], tree["payables"]
    records = ConnectionFactory(
        folder=finance, sandbox=True, name="Records", secret=PAT, is_default=True
    )
    ConnectionFactory(
        folder=payables,
        sandbox=True,
        name="Own app",
        auth_type="oauth2_authorization_code",
        own_app=True,
        secret=OWN_APP,
        fields={"discovered": "kept home"},
    )
    ConnectionFactory(
        folder=tree["hr"],
        connector_key="zendesk",
        auth_type="api_key",
        name="Support",
        description="Tickets",
        fields={"subdomain": "acme", "email": "ops@example.com"},
        polling_interval_seconds=600,
        secret=ZENDESK,
    )
    webhook = create_process(
        folder=finance,
        name="Book invoice",
        webhook_url="https://hooks.example.com/invoices",
        requirements={"sandbox": records},
        created_by=tenant_admin,
    )
    queue = create_process(folder=finance, name="Robots", job_queue=True)
    create_trigger(
        connection=records,
        event_key="record_created",
        filters={"title_contains": "invoice"},
        process=webhook.process,
    )
    create_trigger(
        connection=records,
        event_key="record_created",
        filters={},
        process=queue.process,
        include_existing=True,
        enabled=False,
    )
    assert webhook.signing_secret in leak_guard.secrets
    return tree


def _empty_the_portal():
    Connection.objects.all().delete()
    Process.objects.all().delete()
    Folder.objects.shared().delete()


def _snapshot():
    """What an import must reproduce, by folder path and name."""

    def path(folder):
        names = dict(Folder.objects.values_list("pk", "name"))
        return "/".join(names[pk] for pk in folder.ancestor_ids)

    return {
        "folders": sorted((path(f), f.description) for f in Folder.objects.shared()),
        "connections": sorted(
            (
                path(c.folder),
                c.name,
                c.connector_key,
                c.auth_type,
                c.own_app,
                c.is_default,
                c.description,
                c.polling_interval_seconds,
                tuple(sorted(c.fields.items())),
            )
            for c in Connection.objects.select_related("folder")
        ),
        "processes": sorted(
            (
                path(p.folder),
                p.name,
                p.webhook_url,
                p.job_queue,
                tuple(
                    (r.connector_key, r.connection.name if r.connection else None)
                    for r in p.requirements.all()
                ),
            )
            for p in Process.objects.select_related("folder")
        ),
        "triggers": sorted(
            (
                t.connection.name,
                t.event_key,
                tuple(sorted(t.filters.items())),
                t.include_existing,
                t.enabled,
                t.process.name,
            )
            for t in Trigger.objects.select_related("connection", "process")
        ),
    }


def _counts():
    return (
        Folder.objects.count(),
        Connection.objects.count(),
        Process.objects.count(),
        ProcessConnection.objects.count(),
        Trigger.objects.count(),
        Credential.objects.count(),
    )


def test_export_then_import_into_an_empty_portal(estate, tenant_admin):
    text = export_connections(actor=tenant_admin)
    before = _snapshot()
    # No stored secret of any kind (tokens, API keys, a BYOA app's client id
    # and secret, a webhook signing secret) is in the file.
    assert not [s for s in leak_guard.secrets if s in text]
    for secret in (*PAT.values(), *OWN_APP.values(), *ZENDESK.values()):
        assert secret not in text
    document = json.loads(text)
    assert document["format"] == transfer_format.FORMAT_VERSION
    jsonschema.validate(document, json.loads(transfer_format.SCHEMA_PATH.read_text()))
    # What an OAuth sign-in discovered stays home; the declared fields move.
    own_app = next(c for c in document["connections"] if c["name"] == "Own app")
    assert own_app["fields"] == {} and own_app["own_app"] is True
    assert AuditRecord.objects.filter(action=AuditRecord.Action.CONNECTIONS_EXPORTED).exists()

    _empty_the_portal()
    imported = import_connections(parse(text), actor=tenant_admin)
    after = _snapshot()
    # The same folders, connections, processes and triggers, by path and name ...
    assert after["folders"] == before["folders"]
    assert after["processes"] == before["processes"]
    assert after["triggers"] == before["triggers"]
    assert [c[:8] for c in after["connections"]] == [c[:8] for c in before["connections"]]
    # ... every connection Not yet connected, with no credential, to authenticate.
    assert set(Connection.objects.values_list("state", flat=True)) == {
        ConnectionState.NOT_CONNECTED
    }
    assert not Credential.objects.exists()
    assert {c.name for c in imported.to_authenticate} == {"Records", "Own app", "Support"}
    assert Connection.objects.filter(next_check_at__isnull=False).count() == 0
    # The webhook got a new signing secret, returned once.
    [(process, secret)] = imported.signing_secrets
    assert process.name == "Book invoice" and secret.startswith("whsec_")
    assert secret not in text
    record = AuditRecord.objects.get(action=AuditRecord.Action.CONNECTIONS_IMPORTED)
    assert record.actor == tenant_admin and "3 connections" in record.detail


def test_a_second_import_changes_nothing(estate, tenant_admin):
    document = parse(export_connections())
    _empty_the_portal()
    import_connections(document)
    counts, snapshot = _counts(), _snapshot()
    again = import_connections(document)
    assert _counts() == counts and _snapshot() == snapshot
    assert {step.action for step in again.plan.steps} == {"exists"}
    assert again.to_authenticate == [] and again.signing_secrets == []


def test_into_the_same_portal_everything_is_already_there(estate):
    counts = _counts()
    plan = import_connections(parse(export_connections())).plan
    assert {step.action for step in plan.steps} == {"exists"}
    assert _counts() == counts


def test_under_a_folder(estate, tree):
    document = parse(export_connections(folder=tree["finance"]))
    staging = FolderFactory(name="Staging")
    imported = import_connections(document, under=staging)
    made = Folder.objects.get(name="Payables", path__startswith=staging.path)
    assert [f.name for f in Folder.objects.filter(pk__in=made.ancestor_ids)] == [
        "Staging",
        "Shared",
        "Finance",
        "Payables",
    ]
    assert {c.name for c in imported.to_authenticate} == {"Records", "Own app"}
    # The export of Finance holds Finance and below, nothing of HR.
    moved = Connection.objects.filter(folder__path__startswith=staging.path)
    assert "Support" not in {c.name for c in moved}


def _document(**connection) -> dict:
    entry = {
        "folder": ["Imports"],
        "connector": "zendesk",
        "name": "Support",
        "auth_type": "api_key",
        "fields": {"subdomain": "acme", "email": "ops@example.com"},
    }
    entry.update(connection)
    return {"format": 1, "connections": [entry]}


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"format": 2}, "format: version 2 is newer than this portal reads"),
        ({"connections": []}, "format: Field required"),
        (_document(auth_type="magic"), "connections[0].auth_type: Input should be"),
        (_document(name=""), "connections[0].name: String should have at least 1 character"),
        (_document(secret="x"), "connections[0].secret: Extra inputs are not permitted"),
        (_document(fields={"subdomain": 3}), "connections[0].fields.subdomain: Input should"),
        (_document(polling_interval_seconds=5), "connections[0].polling_interval_seconds:"),
        (
            {**_document(), "processes": [{"folder": ["Imports"], "name": "P", "job": 1}]},
            "processes[0].job: Extra inputs are not permitted",
        ),
    ],
)
def test_a_malformed_file_is_refused_whole_naming_the_field(db, document, named):
    counts = _counts()
    with pytest.raises(DocumentRefused) as refused:
        parse(json.dumps(document))
    assert any(problem.startswith(named) for problem in refused.value.problems), refused.value
    assert _counts() == counts


@pytest.mark.parametrize(
    ("connection", "named"),
    [
        ({"connector": "nowhere"}, "connections[1].connector: no connector 'nowhere'"),
        ({"auth_type": "oauth2_password"}, "connections[1].auth_type: Zendesk offers no"),
        (
            {"fields": {"subdomain": "not a subdomain!", "email": "ops@example.com"}},
            "connections[1].fields.subdomain: Zendesk subdomain must be a subdomain",
        ),
        ({"fields": {"subdomain": "acme"}}, "connections[1].fields.email:"),
        (
            {"fields": {"subdomain": "acme", "email": "a@b.example", "token": "x"}},
            "connections[1].fields.token: not a field of Zendesk",
        ),
        ({"own_app": True}, "connections[1].own_app:"),
        (
            {"triggers": [{"event": "record_created", "process": "P"}]},
            "connections[1].triggers[0].event: Zendesk has no event 'record_created'",
        ),
    ],
)
def test_an_entry_the_portal_refuses_refuses_the_import(db, connection, named):
    good = _document(name="Fine")["connections"][0]
    data = _document(**connection)
    data["connections"].insert(0, good)
    counts = _counts()
    with pytest.raises(ImportRefused) as refused:
        import_connections(parse(json.dumps(data)))
    assert any(p.startswith(named) for p in refused.value.plan.problems), refused.value
    # The good entry is planned, the bad one refused, and nothing is written.
    actions = {step.entry: step.action for step in refused.value.plan.steps}
    assert actions["connections[0]"] == "create"
    assert "refused" in {a for entry, a in actions.items() if entry.startswith("connections[1]")}
    assert _counts() == counts


def test_triggers_and_processes_are_checked(db):
    data = {
        "format": 1,
        "connections": [
            {
                "folder": ["Imports"],
                "connector": "sandbox",
                "name": "Records",
                "auth_type": "pat",
                "triggers": [
                    {"event": "record_created", "process": "Missing"},
                    {"event": "record_created", "filters": {"colour": "red"}, "process": "Q"},
                ],
            }
        ],
        "processes": [
            {"folder": ["Imports"], "name": "Q", "webhook_url": "ftp://nope"},
            {
                "folder": ["Imports"],
                "name": "R",
                "job_queue": True,
                "required_connectors": [{"connector": "sandbox", "connection": "Elsewhere"}],
            },
        ],
    }
    with pytest.raises(ImportRefused) as refused:
        import_connections(parse(json.dumps(data)))
    problems = refused.value.plan.problems
    assert any(
        p.startswith("connections[0].triggers[0].process: no process named") for p in problems
    )
    assert any(p.startswith("connections[0].triggers[1].filters.colour:") for p in problems)
    assert any(p.startswith("processes[0].webhook_url:") for p in problems)
    assert any(p.startswith("processes[1].required_connectors[0].connection:") for p in problems)
    assert not Connection.objects.exists() and not Folder.objects.filter(name="Imports").exists()


def test_the_plan_says_when_the_portal_has_no_app_for_a_sign_in(db, settings):
    """A connection that signs in with the portal's registered app imports
    as Not yet connected either way; without such an app here, its plan line
    says to register one first (a connection with its own app needs none)."""
    settings.PORTAL_OAUTH_APPS = {}
    data = _document(connector="sandbox", name="Ledger", auth_type="oauth2_authorization_code")
    data["connections"][0].pop("fields")
    data["connections"].append({**data["connections"][0], "name": "Own", "own_app": True})
    document = parse(json.dumps(data))
    missing = "No OAuth 2.0 app is registered for Sandbox in this portal"
    ledger, own = (step for step in plan_import(document).steps if step.kind == "connection")
    assert ledger.action == "create" and missing in ledger.note
    assert own.action == "create" and missing not in own.note

    settings.PORTAL_OAUTH_APPS = {"sandbox": {"client_id": "registered", "client_secret": "s"}}
    assert not any(missing in step.note for step in plan_import(document).steps)
    settings.PORTAL_OAUTH_APPS = {}
    set_portal_app("sandbox", client_id="stored", client_secret="stored-client-secret")
    assert not any(missing in step.note for step in plan_import(document).steps)


def test_a_dry_run_writes_nothing(estate, tenant_admin):
    document = parse(export_connections())
    _empty_the_portal()
    counts = _counts()
    audit = AuditRecord.objects.count()
    imported = import_connections(document, dry_run=True)
    assert _counts() == counts and AuditRecord.objects.count() == audit
    assert imported.plan.count("create", "connection") == 3
    assert imported.plan.count("create", "trigger") == 2


def test_the_plan_reads_only(estate, django_assert_max_num_queries):
    document = parse(export_connections())
    with django_assert_max_num_queries(6):
        plan = plan_import(document)
    assert not plan.refused


def test_the_shipped_schema_is_the_definition():
    shipped = json.loads(transfer_format.SCHEMA_PATH.read_text())
    assert shipped == transfer_format.json_schema(), (
        "Regenerate it: python -m connections.transfer.format --write"
    )


# --- The commands -----------------------------------------------------------------------


def test_the_commands_round_trip(estate, tmp_path):
    path = tmp_path / "connections.json"
    call_command("export_connections", "--folder", "Shared/Finance", "--output", str(path))
    names = {c["name"] for c in json.loads(path.read_text())["connections"]}
    assert names == {"Records", "Own app"}
    _empty_the_portal()
    out = io.StringIO()
    call_command("import_connections", str(path), "--dry-run", stdout=out)
    assert "Nothing was written" in out.getvalue() and not Connection.objects.exists()
    out = io.StringIO()
    call_command("import_connections", str(path), stdout=out)
    text = out.getvalue()
    assert "Still to authenticate" in text and "Records" in text
    assert Connection.objects.count() == 2
    # A command's output ends up in logs: never a signing secret, only where to get one.
    assert "whsec_" not in text
    assert Process.objects.exclude(webhook_url="").exists()
    for process in Process.objects.exclude(webhook_url=""):
        assert f"/processes/{process.pk}/signing-secret/" in text
    out = io.StringIO()
    call_command("import_connections", str(path), stdout=out)
    assert "Nothing to create" in out.getvalue()


def test_the_import_command_refuses_naming_the_field(db, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_document(auth_type="magic")))
    with pytest.raises(CommandError, match=r"connections\[0\]\.auth_type"):
        call_command("import_connections", str(path), stdout=io.StringIO())
    with pytest.raises(CommandError, match="No shared folder"):
        call_command("import_connections", str(path), "--folder", "Nowhere")
    assert not Folder.objects.filter(name="Imports").exists()
