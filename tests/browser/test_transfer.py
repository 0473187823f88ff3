"""Moving connections in, as a tenant administrator does it: the Transfer
tab, a file uploaded, its plan read (what will be created, what is already
there, nothing written yet), Confirm import, then the imported connection,
Not yet connected, with Authenticate on its page."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.models import Connection, ConnectionState, Trigger
from connections.transfer.export import export_connections
from connections.triggers.configure import create_trigger
from connections.triggers.processes import create_process
from portal.models import Folder
from tests.browser.conftest import login, screenshot
from tests.factories import ConnectionFactory, FolderFactory


@pytest.fixture
def sandbox_on(settings, live_server):
    settings.PORTAL_SANDBOX_ENABLED = True
    get_catalog.cache_clear()
    yield live_server
    get_catalog.cache_clear()


@pytest.fixture
def transfer_file(tree, tmp_path):
    """Finance's definitions, as exported from another portal: a Sandbox
    connection with a trigger that starts a process robots pull."""
    records = ConnectionFactory(
        folder=tree["finance"], sandbox=True, name="Finance records", secret={"token": "sbx_b_1"}
    )
    process = create_process(folder=tree["finance"], name="Book invoice", job_queue=True).process
    create_trigger(
        connection=records,
        event_key="record_created",
        filters={"title_contains": "invoice"},
        process=process,
    )
    path = tmp_path / "finance.json"
    path.write_text(export_connections(folder=tree["finance"]))
    return path


def test_import_with_its_plan(page: Page, sandbox_on, tree, tenant_admin, transfer_file):
    live_server = sandbox_on
    staging = FolderFactory(name="Staging")
    login(page, live_server, tenant_admin.username)

    page.goto(f"{live_server.url}/tenant/")
    page.get_by_test_id("transfer-tab").click()
    expect(page.get_by_role("heading", name="Upload connection definitions")).to_be_visible()
    screenshot(page, "1-transfer-tab")

    page.get_by_label("Transfer file").set_input_files(str(transfer_file))
    page.get_by_label("Import under").select_option(label="Staging")
    page.get_by_test_id("upload").click()

    # The plan, before anything is written.
    plan = page.get_by_test_id("plan")
    expect(plan).to_be_visible()
    expect(plan.locator("tr[data-kind=connection][data-action=create]")).to_contain_text(
        "Finance records"
    )
    expect(plan.locator("tr[data-kind=process][data-action=create]")).to_contain_text(
        "Book invoice"
    )
    expect(plan.locator("tr[data-kind=trigger][data-action=create]")).to_have_count(1)
    expect(page.get_by_test_id("plan-summary")).to_contain_text("Create")
    assert not Connection.objects.filter(folder__path__startswith=staging.path).exists()
    screenshot(page, "2-plan")

    page.get_by_test_id("confirm-import").click()
    expect(page.get_by_test_id("import-summary")).to_be_visible()
    to_authenticate = page.get_by_test_id("to-authenticate")
    expect(to_authenticate).to_contain_text("Finance records")
    expect(to_authenticate).to_contain_text("Not yet connected")
    screenshot(page, "3-imported")

    imported = Connection.objects.get(folder__path__startswith=staging.path)
    assert imported.state == ConnectionState.NOT_CONNECTED
    assert Trigger.objects.filter(connection=imported).count() == 1

    # The connection's page offers Authenticate.
    to_authenticate.get_by_role("link", name="Finance records").click()
    expect(page.get_by_test_id("status")).to_have_text("Not yet connected")
    page.get_by_test_id("authenticate").click()
    expect(page.get_by_role("heading", name="Authenticate Finance records")).to_be_visible()
    screenshot(page, "4-authenticate")

    # The same file again: everything is already there.
    page.goto(f"{live_server.url}/tenant/transfer/")
    page.get_by_label("Transfer file").set_input_files(str(transfer_file))
    page.get_by_label("Import under").select_option(label="Staging")
    page.get_by_test_id("upload").click()
    expect(page.get_by_test_id("plan").locator("tr[data-action=create]")).to_have_count(0)
    expect(page.get_by_test_id("plan-summary")).to_contain_text("Nothing to create")
    screenshot(page, "5-plan-again")
    page.get_by_test_id("cancel-import").click()
    expect(page.get_by_role("heading", name="Download connection definitions")).to_be_visible()
    assert Folder.objects.filter(path__startswith=staging.path).count() == 4


def test_a_refused_file_names_the_field(
    page: Page, page_problems, sandbox_on, tenant_admin, tmp_path
):
    live_server = sandbox_on
    page_problems.allow_console_error(r"status of 400 .*/tenant/transfer/upload/")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "format": 1,
                "connections": [
                    {"folder": ["X"], "connector": "sandbox", "name": "Y", "auth_type": "magic"}
                ],
            }
        )
    )
    login(page, live_server, tenant_admin.username)
    page.goto(f"{live_server.url}/tenant/transfer/")
    page.get_by_label("Transfer file").set_input_files(str(bad))
    page.get_by_test_id("upload").click()
    expect(page.get_by_test_id("file-refused")).to_contain_text("connections[0].auth_type")
    screenshot(page, "refused")
    assert not Folder.objects.filter(name="X").exists()
