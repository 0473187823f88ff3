"""A folder administrator renames a folder, moves it and deletes another
through the confirmation, from the folder's Settings tab, by keyboard where
a person would. A screenshot of each step; axe and the reflow check on the
settings page and the confirmation."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from portal.models import AuditRecord, Folder
from tests.browser.a11y import check_page
from tests.browser.conftest import login, screenshot
from tests.factories import ConnectionFactory, FolderFactory, assign

VIEWPORT = {"width": 1280, "height": 900}


def test_folder_admin_renames_moves_and_deletes_folders(
    page: Page, live_server, settings, tree, make_user, page_problems
):
    settings.PORTAL_SANDBOX_ENABLED = True
    finance, hr = tree["finance"], tree["hr"]
    FolderFactory(name="Archive", parent=tree["payables"])
    ConnectionFactory(
        folder=tree["payables"], sandbox=True, name="Bank feed", secret={"token": "t"}
    )
    fiona = make_user("fiona")
    assign(fiona, tree["shared"], "Folder Administrator")
    page_problems.allow_console_error(r"status of 400 .*/folders/\d+/settings/")
    page.set_viewport_size(VIEWPORT)
    login(page, live_server, "fiona")

    # From the folder's page to its Settings tab, by keyboard.
    page.goto(f"{live_server.url}/folders/{finance.pk}/connections/")
    page.get_by_test_id("settings-tab").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Name and description")).to_be_visible()
    expect(page.get_by_test_id("folder-location")).to_have_text("Shared")
    check_page(page, "folder settings")
    screenshot(page, "01-settings")

    # A name a sibling has (in another case) is refused next to the field,
    # with what was typed kept.
    name = page.get_by_label("Name", exact=True)
    name.fill("hr")
    page.get_by_test_id("rename-submit").click()
    expect(page.locator("#id_name_error")).to_contain_text(
        "A folder named 'hr' already exists in Shared."
    )
    expect(name).to_have_value("hr")
    screenshot(page, "02-rename-refused")

    name.fill("Accounting")
    page.get_by_role("textbox", name="Description").fill("Ledgers and payables")
    page.get_by_test_id("rename-submit").click()
    expect(page.locator(".messages")).to_contain_text("Folder Finance renamed to Accounting.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Accounting")
    screenshot(page, "03-renamed")

    # Move it into HR.
    page.get_by_label("Move to").select_option(label="Shared / HR")
    page.get_by_test_id("move-submit").click()
    expect(page.locator(".messages")).to_contain_text("Folder Accounting moved into HR.")
    expect(page.get_by_test_id("folder-location")).to_have_text("Shared / HR")
    screenshot(page, "04-moved")
    moved = Folder.objects.get(pk=finance.pk)
    assert (moved.name, moved.parent_id) == ("Accounting", hr.pk)
    assert Folder.objects.get(pk=tree["payables"].pk).path.startswith(moved.path)

    # Delete Payables (with its subfolder and connection) through the confirmation.
    page.goto(f"{live_server.url}/folders/{tree['payables'].pk}/settings/")
    page.get_by_test_id("delete-folder").focus()
    page.keyboard.press("Enter")
    impact = page.get_by_test_id("delete-impact")
    expect(impact).to_contain_text("1 subfolder")
    expect(impact).to_contain_text("1 connection")
    check_page(page, "folder delete confirmation")
    screenshot(page, "05-delete-confirmation")
    page.get_by_test_id("confirm-delete").click()  # the box not ticked
    expect(page.locator("#id_confirm_error")).to_contain_text("Tick the box to confirm")
    assert Folder.objects.filter(pk=tree["payables"].pk).exists()
    screenshot(page, "06-delete-refused")
    page.get_by_label("Delete Payables and everything listed above").check()
    page.get_by_test_id("confirm-delete").click()
    expect(page.locator(".messages")).to_contain_text("Folder Payables was deleted")
    expect(page.get_by_role("heading", level=1)).to_have_text("Accounting")
    screenshot(page, "07-deleted")
    assert not Folder.objects.filter(pk=tree["payables"].pk).exists()
    assert set(
        AuditRecord.objects.filter(folder_id__in=[finance.pk, tree["payables"].pk]).values_list(
            "action", flat=True
        )
    ) >= {
        AuditRecord.Action.FOLDER_RENAMED,
        AuditRecord.Action.FOLDER_MOVED,
        AuditRecord.Action.FOLDER_DELETED,
    }
