"""Deploying a solution as a person does: a published version holding a
Sandbox connection, an event trigger and the process it starts is deployed
into a new folder with "Authenticate after deployment is done"; the
preflight first (nothing written), then Deploy and its progress, polled
until done; the new connection is Not yet connected (its user System, its
trigger paused) until it is authenticated with a Sandbox token, and then its
trigger is active. Screenshots of each step.

The worker is played by the test: it runs the queued deployment while the
progress page polls. The Sandbox check runs for real against the live server.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from connections import sandbox
from connections.catalog import get_catalog
from connections.models import Connection, ConnectionState, Trigger
from connections.triggers.configure import create_trigger
from connections.triggers.processes import create_process
from solutions import authoring, publishing
from solutions.deploy import actions, engine
from solutions.models import Deployment
from tests.browser.conftest import login, screenshot
from tests.factories import ConnectionFactory, assign

VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture
def sandbox_on(settings, live_server):
    settings.PORTAL_SANDBOX_ENABLED = True
    settings.PORTAL_BASE_URL = live_server.url
    get_catalog.cache_clear()
    yield live_server
    get_catalog.cache_clear()


@pytest.fixture
def queued(monkeypatch):
    """The deployments the pages queue, for the test to run as the worker would."""
    ids: list[int] = []
    monkeypatch.setattr(actions.run_deployment_task, "delay_on_commit", ids.append)
    return ids


@pytest.fixture
def published(tree):
    """Version 1 of a solution from Finance: a Sandbox connection, its trigger, its process."""
    records = ConnectionFactory(
        folder=tree["finance"], sandbox=True, name="Finance records", secret={"token": "sbx_x_1"}
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
    solution = authoring.create_solution(name="Invoices", source_folder=tree["finance"])
    authoring.add_components(solution, triggers=[trigger])
    return publishing.publish(solution)


def test_deploy_into_a_new_folder_and_authenticate_after(
    page: Page, sandbox_on, tree, make_user, published, queued
):
    live_server = sandbox_on
    ada = make_user("ada")
    assign(ada, tree["shared"], "Folder Administrator")
    _, token = sandbox.issue_token(user=ada, name="Deployed records")
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "ada")

    # The version's Deploy button, on the solution's page.
    page.goto(f"{live_server.url}/solutions/{published.solution_id}/")
    page.get_by_test_id("deploy-1").click()
    page.get_by_label("Target folder").fill("Shared/Solutions/Invoices")
    page.get_by_label("Authenticate after deployment is done").check()
    screenshot(page, "1-deploy-form")

    # The preflight: the plan, nothing written yet.
    page.get_by_test_id("run-preflight").click()
    preflight = page.get_by_test_id("preflight")
    expect(preflight).to_contain_text("Nothing has been written yet")
    expect(preflight.locator('tr[data-verb="create"]')).to_have_count(5)  # 2 folders, 3 parts
    expect(page.get_by_test_id("preflight-blocking")).to_have_count(0)
    assert not Deployment.objects.exists()
    screenshot(page, "2-preflight")

    # Deploy: the progress page polls until the worker is done.
    page.get_by_test_id("deploy").click()
    expect(page.get_by_test_id("in-progress")).to_be_visible()
    expect(page.get_by_test_id("steps").locator("li")).to_have_count(5)
    screenshot(page, "3-deploying")
    assert engine.run(queued.pop()) == Deployment.State.SUCCEEDED
    expect(page.get_by_test_id("deployment-state")).to_have_text("Deployed")
    expect(page.get_by_test_id("in-progress")).to_have_count(0)
    to_authenticate = page.get_by_test_id("to-authenticate")
    expect(to_authenticate).to_contain_text("Finance records")
    screenshot(page, "4-deployed")

    # The new folder's page: waiting to be authenticated, its user System.
    page.get_by_test_id("deployment-folder").click()
    expect(page.get_by_test_id("to-authenticate")).to_contain_text("Finance records")
    expect(page.get_by_test_id("user")).to_have_text("System")
    screenshot(page, "5-folder-to-authenticate")

    # The connection: Not yet connected, its trigger paused.
    page.get_by_test_id("to-authenticate").get_by_role(
        "link", name="Finance records", exact=True
    ).click()
    expect(page.get_by_test_id("status")).to_have_text("Not yet connected")
    page.get_by_test_id("manage-triggers").click()
    expect(page.get_by_test_id("trigger-status")).to_have_text("Paused")
    screenshot(page, "6-trigger-paused")
    page.go_back()

    # Authenticate it with a Sandbox token.
    page.get_by_test_id("authenticate").click()
    page.get_by_label("Sandbox token").fill(token)
    screenshot(page, "7-authenticate")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("status")).to_have_text("Connected")
    connection = Connection.objects.get(folder__name="Invoices")
    assert connection.state == ConnectionState.CONNECTED
    assert connection.authenticated_by == ada
    screenshot(page, "8-connected")

    # Its trigger is active now, and the list shows who authenticated it.
    page.get_by_test_id("manage-triggers").click()
    expect(page.get_by_test_id("trigger-status")).to_have_text("Enabled")
    assert Trigger.objects.get(connection=connection).enabled
    screenshot(page, "9-trigger-active")
    page.goto(f"{live_server.url}/folders/{connection.folder_id}/connections/")
    expect(page.get_by_test_id("user")).to_have_text("ada")
    expect(page.get_by_test_id("to-authenticate")).to_have_count(0)
    screenshot(page, "10-folder-authenticated")
