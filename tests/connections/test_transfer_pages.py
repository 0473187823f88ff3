"""The Transfer tab of the tenant settings: Download, Upload, the plan, then
Confirm import. Every role's answer to every one of its URLs is a row of
tests/portal/test_permission_matrix.py; here, what the pages do."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from connections.models import Connection, ConnectionState, Credential, Process, Trigger
from connections.transfer.export import export_connections
from connections.transfer.forms import MAX_UPLOAD_BYTES
from connections.triggers.configure import create_trigger
from connections.triggers.processes import create_process
from portal.models import AuditRecord, Folder
from tests import leak_guard
from tests.factories import ConnectionFactory, FolderFactory, assign


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def exported(tree):
    """A file made in another portal: Finance's connection, process and trigger."""
    records = ConnectionFactory(
        folder=tree["finance"], sandbox=True, name="Records", secret={"token": "sbx_page_secret"}
    )
    process = create_process(
        folder=tree["finance"], name="Book", webhook_url="https://hooks.example.com/book"
    ).process
    create_trigger(connection=records, event_key="record_created", filters={}, process=process)
    text = export_connections(folder=tree["finance"])
    Connection.objects.all().delete()
    Process.objects.all().delete()
    Folder.objects.filter(pk__in=[tree["finance"].pk]).delete()
    return text


def _upload(client, text: str, under: Folder | None = None, name: str = "connections.json"):
    return client.post(
        reverse("tenant_transfer_upload"),
        {
            "document": SimpleUploadedFile(name, text.encode(), "application/json"),
            "under": str(under.pk) if under else "",
        },
    )


def test_the_tab_is_among_the_tenant_settings(client, tenant_admin):
    client.force_login(tenant_admin)
    page = client.get(reverse("tenant_transfer")).content.decode()
    assert 'data-testid="transfer-tab"' in page and "Download" in page and "Upload" in page
    governance = client.get(reverse("tenant_governance")).content.decode()
    assert reverse("tenant_transfer") in governance


def test_download_one_folder_or_all(client, tenant_admin, tree):
    ConnectionFactory(folder=tree["payables"], sandbox=True, name="Payables records")
    ConnectionFactory(folder=tree["hr"], sandbox=True, name="People")
    client.force_login(tenant_admin)
    response = client.post(reverse("tenant_transfer_export"), {"folder": tree["finance"].pk})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="connections-')
    document = json.loads(response.content)
    assert [c["name"] for c in document["connections"]] == ["Payables records"]
    everything = json.loads(client.post(reverse("tenant_transfer_export")).content)
    assert {c["name"] for c in everything["connections"]} == {"Payables records", "People"}
    record = AuditRecord.objects.filter(action=AuditRecord.Action.CONNECTIONS_EXPORTED).first()
    assert record.actor == tenant_admin


def test_upload_shows_the_plan_and_writes_nothing_until_confirmed(
    client, tenant_admin, tree, exported
):
    client.force_login(tenant_admin)
    staging = FolderFactory(name="Staging")
    response = _upload(client, exported, under=staging)
    assert response.status_code == 302 and response["Location"] == reverse("tenant_transfer_plan")
    plan = client.get(reverse("tenant_transfer_plan"))
    page = plan.content.decode()
    assert plan.status_code == 200
    assert "Staging" in page and "Records" in page and "Book" in page
    assert 'data-action="create"' in page and 'data-testid="confirm-import"' in page
    assert not Connection.objects.exists() and not Process.objects.exists()

    done = client.post(
        reverse("tenant_transfer_confirm"), {"digest": client.session["transfer_pending"]["digest"]}
    )
    assert done.status_code == 200
    connection = Connection.objects.get(name="Records")
    assert connection.state == ConnectionState.NOT_CONNECTED
    assert not Credential.objects.filter(pk=connection.pk).exists()
    assert connection.folder.ancestor_ids[0] == staging.pk
    assert Trigger.objects.filter(connection=connection).count() == 1
    text = done.content.decode()
    assert reverse("connection_detail", args=[connection.folder_id, connection.pk]) in text
    # The new process's signing secret, shown this once.
    assert 'data-testid="signing-secret"' in text
    assert "transfer_pending" not in client.session
    record = AuditRecord.objects.get(action=AuditRecord.Action.CONNECTIONS_IMPORTED)
    assert record.actor == tenant_admin

    # The same file again: everything is already there, nothing changes.
    _upload(client, exported, under=staging)
    again = client.get(reverse("tenant_transfer_plan")).content.decode()
    assert 'data-action="create"' not in again and 'data-action="exists"' in again
    client.post(
        reverse("tenant_transfer_confirm"), {"digest": client.session["transfer_pending"]["digest"]}
    )
    assert Connection.objects.count() == 1 and Process.objects.count() == 1


def test_a_malformed_file_is_refused_naming_the_field(client, tenant_admin):
    client.force_login(tenant_admin)
    bad = {"format": 1, "connections": [{"folder": ["X"], "name": "Y", "auth_type": "pat"}]}
    response = _upload(client, json.dumps(bad))
    assert response.status_code == 400
    assert "connections[0].connector: Field required" in response.content.decode()
    assert "transfer_pending" not in client.session


def test_a_refused_entry_shows_in_the_plan_with_no_confirm(client, tenant_admin):
    client.force_login(tenant_admin)
    data = {
        "format": 1,
        "connections": [
            {"folder": ["X"], "connector": "nowhere", "name": "Y", "auth_type": "pat"},
        ],
    }
    assert _upload(client, json.dumps(data)).status_code == 302
    page = client.get(reverse("tenant_transfer_plan")).content.decode()
    assert "connections[0].connector: no connector &#x27;nowhere&#x27;" in page
    assert 'data-testid="confirm-import"' not in page
    digest = client.session["transfer_pending"]["digest"]
    response = client.post(reverse("tenant_transfer_confirm"), {"digest": digest})
    assert response.status_code == 400
    assert not Folder.objects.filter(name="X").exists()


def test_a_file_too_large_is_refused(client, tenant_admin):
    client.force_login(tenant_admin)
    response = _upload(client, " " * (MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 400 and "larger than" in response.content.decode()


def test_confirm_imports_only_the_plan_shown(client, tenant_admin, exported):
    client.force_login(tenant_admin)
    _upload(client, exported)
    response = client.post(reverse("tenant_transfer_confirm"), {"digest": "not-the-one"})
    assert response.status_code == 302 and not Connection.objects.exists()
    response = client.post(reverse("tenant_transfer_confirm"), {"cancel": "1"})
    assert response.status_code == 302 and "transfer_pending" not in client.session
    assert not Connection.objects.exists()


@pytest.mark.parametrize("role", ["Folder Administrator", "Automation Developer", "Viewer"])
def test_only_tenant_administrators(client, make_user, tree, exported, role):
    """A folder role, however strong, is not the tenant's: refused, with a
    document waiting in the session or not, and nothing is written."""
    user = make_user("member")
    assign(user, tree["shared"], role)
    client.force_login(user)
    session = client.session
    session["transfer_pending"] = {
        "document": exported,
        "digest": "d",
        "under": None,
        "name": "connections.json",
    }
    session.save()
    assert client.get(reverse("tenant_transfer")).status_code == 403
    assert client.post(reverse("tenant_transfer_export")).status_code == 403
    assert _upload(client, exported).status_code == 403
    assert client.get(reverse("tenant_transfer_plan")).status_code == 403
    assert client.post(reverse("tenant_transfer_confirm"), {"digest": "d"}).status_code == 403
    assert not Connection.objects.exists()


def test_an_imported_connection_offers_authenticate(client, tenant_admin, tree):
    """Not yet connected: Authenticate on its page, whatever its auth type;
    a secret-based one becomes Connected with the secret typed there."""
    pat = Connection.objects.create(
        folder=tree["finance"], connector_key="sandbox", name="Typed", auth_type="pat"
    )
    own_app = Connection.objects.create(
        folder=tree["finance"],
        connector_key="sandbox",
        name="Own app",
        auth_type="oauth2_authorization_code",
        own_app=True,
    )
    client.force_login(tenant_admin)
    page = client.get(reverse("connection_detail", args=[tree["finance"].pk, pat.pk]))
    assert 'data-testid="authenticate"' in page.content.decode()
    form = client.get(reverse("connection_replace_secret", args=[tree["finance"].pk, pat.pk]))
    assert "Authenticate Typed" in form.content.decode()
    page = client.get(reverse("connection_detail", args=[tree["finance"].pk, own_app.pk]))
    assert "Authenticate" in page.content.decode()
    # Its own app never moved: the user brings it (client id and secret) and signs in.
    form = client.get(reverse("connection_reconnect", args=[tree["finance"].pk, own_app.pk]))
    assert form.status_code == 200
    text = form.content.decode()
    assert 'name="client_id"' in text and 'name="client_secret"' in text
    assert "Authenticate Own app" in text


def test_the_exported_file_holds_no_stored_secret(client, tenant_admin, tree):
    ConnectionFactory(
        folder=tree["finance"],
        sandbox=True,
        name="Own app",
        auth_type="oauth2_authorization_code",
        own_app=True,
        secret={"client_id": "page-app-id", "client_secret": "page-app-client-secret-1"},
    )
    create_process(folder=tree["finance"], name="Hook", webhook_url="https://hooks.example.com/x")
    client.force_login(tenant_admin)
    text = client.post(reverse("tenant_transfer_export")).content.decode()
    assert leak_guard.secrets and not [s for s in leak_guard.secrets if s in text]
    assert "page-app-id" not in text
