"""Authoring a solution as a person does: from the Solutions link, a new
solution from a folder holding a Sandbox connection, a trigger and the
process it starts; the trigger picked (its connection and process come
along); the connection's properties edited and one locked; Build and
publish; the version downloaded, with no stored secret in it."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from connections.catalog import get_catalog
from connections.triggers.configure import create_trigger
from connections.triggers.processes import create_process
from solutions.models import Component, SolutionVersion
from tests import leak_guard
from tests.browser.conftest import login, screenshot
from tests.factories import ConnectionFactory, assign

SECRET = "sbx_browser_solution_secret_01"


@pytest.fixture
def sandbox_on(settings, live_server):
    settings.PORTAL_SANDBOX_ENABLED = True
    get_catalog.cache_clear()
    yield live_server
    get_catalog.cache_clear()


def test_author_publish_and_download(page: Page, page_problems, sandbox_on, tree, make_user):
    live_server = sandbox_on
    # The refused edit below answers 400 with the form again, as it should.
    page_problems.allow_console_error(r"status of 400 .*/solutions/\d+/components/\d+/edit/")
    author = make_user("author")
    assign(author, tree["finance"], "Automation Developer")
    records = ConnectionFactory(
        folder=tree["finance"], sandbox=True, name="Finance records", secret={"token": SECRET}
    )
    made = create_process(
        folder=tree["finance"],
        name="Book invoice",
        webhook_url="https://robots.example.com/hooks/invoices",
        requirements={"sandbox": records},
    )
    trigger = create_trigger(
        connection=records,
        event_key="record_created",
        filters={"title_contains": "invoice"},
        process=made.process,
    )
    login(page, live_server, author.username)

    page.get_by_role("link", name="Solutions", exact=True).click()
    expect(page.get_by_test_id("solutions-empty")).to_be_visible()
    screenshot(page, "1-no-solutions")

    page.get_by_test_id("new-solution").click()
    page.get_by_label("Solution name").fill("Invoicing")
    page.get_by_label("Source folder").select_option(label="Shared / Finance")
    screenshot(page, "2-new-solution")
    page.get_by_test_id("create-solution").click()
    expect(page.get_by_test_id("components-empty")).to_be_visible()

    page.get_by_test_id("candidate-triggers").get_by_role("checkbox").check()
    screenshot(page, "3-pick-a-trigger")
    page.get_by_test_id("add-picked").click()
    connection_key = f"connection-{records.pk}"
    expect(page.get_by_test_id(f"component-{connection_key}")).to_be_visible()
    expect(page.get_by_test_id(f"component-trigger-{trigger.pk}")).to_be_visible()
    expect(page.get_by_test_id(f"component-process-{made.process.pk}")).to_be_visible()

    page.get_by_test_id(f"edit-{connection_key}").click()
    page.get_by_label("Connection name", exact=True).fill("")
    page.get_by_test_id("save-component").click()
    expect(page.locator(".error-summary")).to_contain_text("Connection name")
    screenshot(page, "4-edit-refused")
    page.get_by_label("Connection name", exact=True).fill("Finance records (production)")
    page.get_by_label("Connection description (optional)").fill("Invoices arrive here")
    page.get_by_label("Authentication type", exact=True).select_option("oauth2_authorization_code")
    page.get_by_label("Lock Authentication type").check()
    page.get_by_test_id("save-component").click()
    row = page.get_by_test_id(f"component-{connection_key}")
    expect(row).to_contain_text("Finance records (production)")
    expect(page.get_by_test_id(f"lock-{connection_key}-auth_type")).to_have_attribute(
        "aria-pressed", "true"
    )

    # A lock toggle, by keyboard: the panel is swapped in place.
    lock = page.get_by_test_id(f"lock-{connection_key}-name")
    lock.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id(f"lock-{connection_key}-name")).to_have_attribute(
        "aria-pressed", "true"
    )
    component = Component.objects.get(key=connection_key)
    assert component.locked == ["name", "auth_type"]
    screenshot(page, "5-components")

    page.get_by_label("Version notes").fill("First version")
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("version-1")).to_contain_text("First version")
    screenshot(page, "6-published")

    with page.expect_download() as download:
        page.get_by_test_id("download-1").click()
    text = download.value.path().read_text(encoding="utf-8")
    package = json.loads(text)
    assert package["format"] == 1 and package["version"] == 1
    [connection] = package["connections"]
    assert connection["name"] == "Finance records (production)"
    assert connection["locked"] == ["name", "auth_type"]
    assert package["triggers"][0]["filters"] == {"title_contains": "invoice"}
    assert SECRET in leak_guard.secrets and made.signing_secret in leak_guard.secrets
    assert SECRET not in text and made.signing_secret not in text
    assert SolutionVersion.objects.get().manifest["version"] == 1
