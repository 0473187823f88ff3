"""The portal foundation as a person uses it: sign-in, the folder tree, the
Connections tab, folder access and subfolders, and the tenant settings.

Each test signs in through the real login form, clicks what a person clicks,
saves a screenshot of each key page, and (through ``page_problems`` in the
conftest) fails on any CSP violation or console error.
"""

import re

from playwright.sync_api import Page, expect

from portal.models import Folder, Invitation, RoleAssignment, TenantSettings
from tests.browser.conftest import login, screenshot
from tests.factories import assign


def tree_names(page: Page) -> list[str]:
    return (
        page.get_by_test_id("folder-tree")
        .locator("a[data-folder]")
        .evaluate_all("links => links.map(link => link.dataset.folder)")
    )


def tree_link(page: Page, name: str):
    return page.get_by_test_id("folder-tree").locator(f'a[data-folder="{name}"]')


def test_member_sees_only_their_folders_and_create_follows_role(
    page: Page, live_server, tree, make_user
):
    dana = make_user("dana")
    assign(dana, tree["hr"], "Automation User")
    assign(dana, tree["finance"], "Automation Developer")

    login(page, live_server, "dana")
    # Home is the personal workspace's Connections tab.
    workspace = Folder.objects.get(owner=dana)
    expect(page).to_have_url(f"{live_server.url}/folders/{workspace.pk}/connections/")
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    expect(page.get_by_test_id("add-connection")).to_be_visible()
    # Exactly: the workspace first, then the granted folders (Shared, the
    # parent Dana has no role on, and the unrelated Other stay out of sight).
    assert tree_names(page) == [workspace.name, "Finance", "Payables", "HR"]
    expect(tree_link(page, "Shared")).to_have_count(0)
    expect(tree_link(page, "Other")).to_have_count(0)
    finance_item = tree_link(page, "Finance").locator("xpath=..")
    expect(finance_item.locator('ul a[data-folder="Payables"]')).to_be_visible()
    screenshot(page, "01-workspace")

    tree_link(page, "HR").click()
    expect(page).to_have_url(f"{live_server.url}/folders/{tree['hr'].pk}/connections/")
    expect(page.get_by_role("heading", level=1)).to_have_text("HR")
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    expect(page.get_by_test_id("add-connection")).to_have_count(0)
    expect(page.get_by_test_id("cannot-create")).to_be_visible()
    # Not a folder administrator: no Access tab.
    expect(page.get_by_role("link", name="Access", exact=True)).to_have_count(0)
    screenshot(page, "02-hr-automation-user")

    tree_link(page, "Finance").click()
    expect(page).to_have_url(f"{live_server.url}/folders/{tree['finance'].pk}/connections/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Finance")
    expect(page.get_by_test_id("add-connection")).to_be_visible()
    expect(page.get_by_test_id("cannot-create")).to_have_count(0)
    screenshot(page, "03-finance-automation-developer")


def test_folder_admin_gives_a_role_and_creates_a_subfolder(
    page: Page, live_server, tree, make_user
):
    fay = make_user("fay")
    make_user("gus")
    assign(fay, tree["finance"], "Folder Administrator")

    login(page, live_server, "fay")
    tree_link(page, "Finance").click()
    page.get_by_role("link", name="Access", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/folders/{tree['finance'].pk}/access/")
    assignments = page.get_by_test_id("assignments")
    expect(
        assignments.get_by_role("row", name=re.compile(r"fay\s+Folder Administrator"))
    ).to_be_visible()
    screenshot(page, "01-access")

    # The form is usable from the keyboard: type the user, Tab through the
    # group and role, choose the role, submit with Enter.
    form = page.locator("#assignment-form")
    form.get_by_label("User").click()
    page.keyboard.type("gus")
    page.keyboard.press("Tab")
    expect(form.get_by_label("Group")).to_be_focused()
    page.keyboard.press("Tab")
    role = form.get_by_label("Role")
    expect(role).to_be_focused()
    role.select_option(label="Viewer")
    screenshot(page, "02-access-form-filled")
    # htmx (served from our static files under the CSP) sends the form.
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        form.get_by_label("User").press("Enter")
    assert posted.value.request.headers.get("hx-request") == "true"
    assert posted.value.headers.get("hx-redirect") == f"/folders/{tree['finance'].pk}/access/"

    expect(page.get_by_role("status")).to_contain_text("gus is now Viewer")
    expect(
        assignments.get_by_role("row", name=re.compile(r"gus\s+Viewer\s+This folder"))
    ).to_be_visible()
    assert RoleAssignment.objects.filter(
        folder=tree["finance"], user__username="gus", role__name="Viewer"
    ).exists()
    screenshot(page, "03-access-role-given")

    page.get_by_role("link", name="Subfolders", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/folders/{tree['finance'].pk}/subfolders/")
    page.get_by_label("Name").fill("Receivables")
    page.get_by_label("Description").fill("Money owed to us")
    page.get_by_role("button", name="Create subfolder").click()

    expect(page.get_by_role("status")).to_contain_text("Folder Receivables created.")
    expect(page.get_by_role("row", name=re.compile(r"^Receivables"))).to_be_visible()
    finance_item = tree_link(page, "Finance").locator("xpath=..")
    expect(finance_item.locator('ul a[data-folder="Receivables"]')).to_be_visible()
    assert Folder.objects.filter(parent=tree["finance"], name="Receivables").exists()
    screenshot(page, "04-subfolder-created")


def test_tenant_admin_governance_workspaces_and_invitation(
    page: Page, live_server, tenant_admin, make_user, mailoutbox
):
    make_user("erin")
    make_user("frank")

    login(page, live_server, tenant_admin.username)
    page.get_by_role("link", name="Tenant settings").click()
    expect(page).to_have_url(f"{live_server.url}/tenant/")
    allow = page.get_by_label("Allow users to create connections in shared folders")
    expect(allow).to_be_checked()
    screenshot(page, "01-governance")

    allow.uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Governance settings saved.")
    expect(allow).not_to_be_checked()
    assert TenantSettings.load().allow_shared_connection_creation is False
    screenshot(page, "02-governance-off")

    allow.check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Governance settings saved.")
    expect(allow).to_be_checked()
    assert TenantSettings.load().allow_shared_connection_creation is True

    page.get_by_role("link", name="Personal workspaces").click()
    workspaces = page.get_by_test_id("workspaces")
    for username in ("root", "erin", "frank"):
        expect(workspaces.get_by_role("cell", name=username, exact=True)).to_be_visible()
    screenshot(page, "03-workspaces")
    page.get_by_role("searchbox", name="Search workspaces").fill("erin")
    page.get_by_role("button", name="Search").click()
    expect(workspaces.get_by_role("cell", name="erin", exact=True)).to_be_visible()
    expect(workspaces.get_by_role("cell", name="frank", exact=True)).to_have_count(0)
    screenshot(page, "04-workspaces-search")

    page.get_by_role("link", name="Invitations").click()
    page.get_by_label("E-mail address").fill("newcomer@example.com")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status")).to_contain_text("Invitation sent to newcomer@example.com.")
    row = page.get_by_test_id("invitations").get_by_role("row", name=re.compile("newcomer"))
    expect(row).to_contain_text("Pending")
    expect(row).to_contain_text("root")
    screenshot(page, "05-invitation-sent")

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["newcomer@example.com"]
    assert "/invitations/" in message.body
    assert Invitation.objects.filter(email="newcomer@example.com").count() == 1


def test_login_page_and_wrong_password(page: Page, live_server, make_user):
    make_user("hana")

    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.locator("input[name=login]")).to_be_visible()
    expect(page.locator("input[name=password]")).to_be_visible()
    expect(page.get_by_test_id("folder-tree")).to_have_count(0)
    screenshot(page, "01-login")

    page.locator("input[name=login]").fill("hana")
    page.locator("input[name=password]").fill("not-the-password")
    page.locator("main form button[type=submit]").click()
    expect(page.locator("main .errorlist")).to_contain_text(
        "The username and/or password you specified are not correct."
    )
    expect(page.get_by_test_id("current-user")).to_have_count(0)
    expect(page.locator("input[name=password]")).to_have_value("")
    screenshot(page, "02-wrong-password")

    login(page, live_server, "hana")
    screenshot(page, "03-signed-in")


def test_problem_watcher_catches_csp_violations_and_console_errors(
    page: Page, live_server, page_problems
):
    """The guard every test relies on can fail: an inline script and a
    console error on a portal page are both caught."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.body.append(script);
          console.error("deliberate console error");
        }"""
    )
    expect(page.locator("body")).to_be_visible()
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.inlineRan") is None
    page.goto(f"{live_server.url}/accounts/login/")  # the report survives navigation
    found = "\n".join(page_problems.report())
    assert "CSP violation: script-src-elem blocked 'inline'" in found
    assert "console error: deliberate console error" in found
    page_problems.clear()
