"""Read-only mode is turned on and off on the governance page, by tenant
administrators only (the server refuses everyone else, whatever they post),
and each change is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from portal.models import AuditRecord, TenantSettings
from tests.factories import assign

ON = {"allow_shared_connection_creation": "on", "read_only": "on"}


def test_the_page_shows_the_setting(client, tenant_admin):
    client.force_login(tenant_admin)
    page = client.get(reverse("tenant_governance")).content.decode()
    assert "Read-only API and command-line client" in page
    assert 'name="read_only"' in page
    assert "checked" not in page.split('name="read_only"')[1].split(">")[0]


def test_a_tenant_admin_turns_it_on_and_off(client, tenant_admin):
    client.force_login(tenant_admin)
    url = reverse("tenant_governance")
    response = client.post(url, ON)
    assert response.status_code == 302
    tenant = TenantSettings.load()
    assert tenant.read_only is True
    assert tenant.allow_shared_connection_creation is True
    page = client.get(url).content.decode()
    assert "checked" in page.split('name="read_only"')[1].split(">")[0]
    record = AuditRecord.objects.get(action=AuditRecord.Action.TENANT_SETTINGS_CHANGED)
    assert record.detail == "Read-only API and command-line client: off → on"

    # An unchecked box is off.
    assert client.post(url, {"allow_shared_connection_creation": "on"}).status_code == 302
    assert TenantSettings.load().read_only is False
    assert AuditRecord.objects.filter(
        action=AuditRecord.Action.TENANT_SETTINGS_CHANGED,
        detail="Read-only API and command-line client: on → off",
    ).exists()


@pytest.mark.parametrize("role", [None, "Viewer", "Automation Developer", "Folder Administrator"])
def test_nobody_else_may_turn_it_on(client, tree, make_user, role):
    user = make_user("someone")
    if role:
        assign(user, tree["shared"], role)
    client.force_login(user)
    response = client.post(reverse("tenant_governance"), ON)
    assert response.status_code == 403
    assert TenantSettings.load().read_only is False
    assert not AuditRecord.objects.filter(
        action=AuditRecord.Action.TENANT_SETTINGS_CHANGED
    ).exists()


def test_signed_out_it_asks_to_sign_in(client, db):
    response = client.post(reverse("tenant_governance"), ON)
    assert response.status_code == 302
    assert "login" in response["Location"]
    assert TenantSettings.load().read_only is False
