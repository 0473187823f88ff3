"""With governance "Allow users to create connections in shared folders"
off, a developer of a shared folder is told why they cannot add a
connection there (the tenant's setting, not their role) and where they can
(their personal workspace): on the folder page, on the wizard's pages and
in the API's 403, all in the permission module's words."""

import re
from html import unescape

import pytest
from django.urls import reverse

from portal import api_keys
from portal.models import TenantSettings
from portal.permissions import GOVERNANCE_CREATE_REFUSED
from tests.connections.api.conftest import ApiClient
from tests.factories import assign

pytestmark = pytest.mark.django_db

ROLE_REFUSAL = "You do not have Connections - Create in this folder."


@pytest.fixture(autouse=True)
def governance_off(db):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": False}
    )


def _text(response) -> str:
    return re.sub(r"\s+", " ", unescape(response.content.decode()))


def test_the_reason_names_the_setting_not_the_role():
    assert "governance" in GOVERNANCE_CREATE_REFUSED
    assert "administrators" in GOVERNANCE_CREATE_REFUSED
    assert "personal workspace" in GOVERNANCE_CREATE_REFUSED


@pytest.mark.parametrize(
    ("url_name", "args"),
    [
        ("connection_add", ()),
        ("connection_add_auth", ("sandbox",)),
        ("connection_add_details", ("sandbox", "pat")),
    ],
)
def test_wizard_pages_say_governance_and_link_the_workspace(
    client, developer, tree, settings, url_name, args
):
    settings.PORTAL_SANDBOX_ENABLED = True
    response = client.get(reverse(url_name, args=[tree["finance"].pk, *args]))
    assert response.status_code == 403
    text = _text(response)
    assert GOVERNANCE_CREATE_REFUSED in text
    assert "You do not have" not in text
    workspace = developer.personal_workspace
    same_step = reverse(url_name, args=[workspace.pk, *args])
    assert f'href="{same_step}"' in response.content.decode()
    assert client.get(same_step).status_code == 200


def test_folder_page_has_a_note_in_place_of_the_button(client, developer, tree):
    response = client.get(reverse("folder_connections", args=[tree["finance"].pk]))
    page = response.content.decode()
    assert 'data-testid="add-connection"' not in page
    note = re.search(r'data-testid="governance-note".*?</p>', page, re.S)
    assert note, page[:4000]
    assert "administrators" in unescape(note.group(0))
    workspace = reverse("folder_connections", args=[developer.personal_workspace.pk])
    assert f'href="{workspace}"' in note.group(0)
    assert 'data-testid="cannot-create"' not in page  # one note, not two


def test_api_refuses_in_the_same_words(developer, tree):
    api = ApiClient(api_keys.issue(owner=developer, name="k", actor=developer).raw)
    body = {"connector": "sandbox", "auth_type": "pat", "name": "N", "secret": {"token": "x"}}
    response = api.post(f"/api/v1/folders/{tree['finance'].pk}/connections", body)
    assert response.status_code == 403
    assert response.json()["detail"] == GOVERNANCE_CREATE_REFUSED


def test_a_role_without_create_is_still_told_it_is_the_role(client, make_user, tree):
    user = make_user("uma")
    assign(user, tree["finance"], "Automation User")
    client.force_login(user)
    response = client.get(reverse("connection_add", args=[tree["finance"].pk]))
    assert response.status_code == 403
    assert ROLE_REFUSAL in _text(response)
    page = client.get(reverse("folder_connections", args=[tree["finance"].pk])).content.decode()
    assert 'data-testid="governance-note"' not in page
    assert 'data-testid="cannot-create"' in page


def test_folder_administrators_and_the_workspace_are_unaffected(client, make_user, tree):
    admin = make_user("fay")
    assign(admin, tree["finance"], "Folder Administrator")
    client.force_login(admin)
    page = client.get(reverse("folder_connections", args=[tree["finance"].pk])).content.decode()
    assert 'data-testid="add-connection"' in page
    assert 'data-testid="governance-note"' not in page
    workspace = admin.personal_workspace.pk
    page = client.get(reverse("folder_connections", args=[workspace])).content.decode()
    assert 'data-testid="add-connection"' in page and 'data-testid="governance-note"' not in page
