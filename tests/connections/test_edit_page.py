"""The edit page says the fields rule once (portal.permissions.FIELDS_NEED_USE:
changing the connection fields needs Connections - Use as well as Edit):
beside the form to who lacks Use, as the refusal when they try, and not at
all to who holds it."""

from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.models import Role, RoleAssignment
from portal.permissions import FIELDS_NEED_USE
from tests.connections.fake_provider import GOOD_BASIC
from tests.factories import ConnectionFactory, assign

CHECKED_WITH_THE_SECRET = "Changed connection fields are checked with the stored secret"


@pytest.fixture
def mail(tree, fakehub):
    email, api_token = GOOD_BASIC
    return ConnectionFactory(
        folder=tree["finance"],
        name="Mail robot",
        auth_type="basic",
        fields={"email": email},
        secret={"api_token": api_token},
    )


@pytest.fixture
def editor(tree, make_user):
    """Connections - View and Edit on Finance, not Use."""
    role = Role.objects.create(name="Connection editor")
    role.permissions.set(
        Permission.objects.filter(codename__in=["view_connections", "edit_connections"])
    )
    user = make_user("editor")
    RoleAssignment.objects.create(folder=tree["finance"], role=role, user=user)
    return user


def edit_url(connection) -> str:
    return reverse("connection_edit", args=[connection.folder_id, connection.pk])


def form(connection, **changes) -> dict:
    return {
        "name": connection.name,
        "description": connection.description,
        "polling_interval_seconds": connection.polling_interval_seconds,
        **{f"field_{key}": value for key, value in connection.fields.items()},
        **changes,
    }


def test_who_lacks_use_reads_the_rule_once_beside_the_form_then_as_the_refusal(
    client, editor, mail
):
    client.force_login(editor)
    page = unescape(client.get(edit_url(mail)).content.decode())
    assert page.count(FIELDS_NEED_USE) == 1
    assert 'data-testid="fields-need-use"' in page
    assert CHECKED_WITH_THE_SECRET not in page

    refused = client.post(edit_url(mail), form(mail, field_email="else@example.com"))
    assert refused.status_code == 403
    page = unescape(refused.content.decode())
    assert page.count(FIELDS_NEED_USE) == 1
    assert 'data-testid="connect-error"' in page and 'data-testid="fields-need-use"' not in page
    assert 'value="else@example.com"' in page  # what was typed stays


def test_who_holds_use_reads_no_rule(client, make_user, tree, mail):
    developer = make_user("dev")
    assign(developer, tree["finance"], "Automation Developer")
    client.force_login(developer)
    page = unescape(client.get(edit_url(mail)).content.decode())
    assert FIELDS_NEED_USE not in page and 'data-testid="fields-need-use"' not in page
    assert CHECKED_WITH_THE_SECRET in page
