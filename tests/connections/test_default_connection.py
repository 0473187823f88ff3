"""A folder's default connection on the pages (Make default / Stop being
default, the Default badge), and the Credential reads of a connection's
page: who may do and see what, answered by the server."""

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connections.models import Connection, ConnectionEvent
from portal import audit
from portal.models import AuditRecord
from tests.factories import ConnectionFactory, assign

ROLES = {
    "Folder Administrator": True,
    "Automation Developer": True,
    "Automation User": False,
    "Viewer": False,
}


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


def default_url(connection) -> str:
    return reverse("connection_set_default", args=[connection.folder_id, connection.pk])


def detail_url(connection) -> str:
    return reverse("connection_detail", args=[connection.folder_id, connection.pk])


@pytest.mark.parametrize("role", [*ROLES, None], ids=lambda r: r or "no-role")
def test_make_default_needs_connections_edit(client, tree, make_user, role):
    user = make_user("member")
    if role:
        assign(user, tree["finance"], role)
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True)
    client.force_login(user)
    response = client.post(default_url(connection), {"default": "1"})
    expected = 302 if ROLES.get(role) else 403 if role else 404
    assert response.status_code == expected
    connection.refresh_from_db()
    assert connection.is_default is (expected == 302)

    # Stopping it being the default needs the same.
    Connection.objects.filter(pk=connection.pk).update(is_default=True)
    response = client.post(default_url(connection), {"default": "0"})
    assert response.status_code == expected
    connection.refresh_from_db()
    assert connection.is_default is (expected != 302)


def test_make_default_is_post_only(client, tree, tenant_admin):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True)
    client.force_login(tenant_admin)
    assert client.get(default_url(connection)).status_code == 405
    connection.refresh_from_db()
    assert not connection.is_default


def test_a_connection_in_another_folder_is_404(client, tree, make_user):
    user = make_user("member")
    assign(user, tree["finance"], "Folder Administrator")
    elsewhere = ConnectionFactory(folder=tree["hr"], sandbox=True)
    client.force_login(user)
    url = reverse("connection_set_default", args=[tree["finance"].pk, elsewhere.pk])
    assert client.post(url, {"default": "1"}).status_code == 404
    elsewhere.refresh_from_db()
    assert not elsewhere.is_default


def test_someone_elses_workspace_is_404_even_for_a_tenant_admin(client, make_user, tenant_admin):
    owner = make_user("owner")
    connection = ConnectionFactory(folder=owner.personal_workspace, sandbox=True)
    client.force_login(tenant_admin)
    assert client.post(default_url(connection), {"default": "1"}).status_code == 404
    client.force_login(owner)
    assert client.post(default_url(connection), {"default": "1"}).status_code == 302
    connection.refresh_from_db()
    assert connection.is_default


def test_making_another_default_moves_the_badge(client, tree, tenant_admin):
    first = ConnectionFactory(folder=tree["finance"], name="First", sandbox=True)
    second = ConnectionFactory(folder=tree["finance"], name="Second", sandbox=True)
    other_connector = ConnectionFactory(
        folder=tree["finance"], name="Other", connector_key="github"
    )
    client.force_login(tenant_admin)
    for connection in (first, other_connector, second):
        response = client.post(default_url(connection), {"default": "1"})
        assert response.status_code == 302
        assert response["Location"] == detail_url(connection)
    defaults = set(Connection.objects.filter(is_default=True).values_list("name", flat=True))
    assert defaults == {"Second", "Other"}
    assert ConnectionEvent.objects.filter(
        connection=second, kind=ConnectionEvent.Kind.EDITED, actor=tenant_admin
    ).exists()

    listing = client.get(reverse("folder_connections", args=[tree["finance"].pk]))
    rows = listing.content.decode().split("<tr>")
    assert [row for row in rows if 'data-testid="default-badge"' in row and ">First<" in row] == []
    assert any('data-testid="default-badge"' in row and ">Second<" in row for row in rows)

    page = client.get(detail_url(second)).content.decode()
    assert 'data-testid="default-badge"' in page and 'data-testid="clear-default"' in page
    page = client.get(detail_url(first)).content.decode()
    assert 'data-testid="default-badge"' not in page and 'data-testid="make-default"' in page

    follow = client.post(default_url(second), {"default": "0"}, follow=True)
    assert "no longer the folder" in follow.content.decode()
    second.refresh_from_db()
    assert not second.is_default


@pytest.mark.parametrize("role", ["Automation User", "Viewer"])
def test_button_only_for_those_who_may_edit(client, tree, make_user, role):
    user = make_user("member")
    assign(user, tree["finance"], role)
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True)
    Connection.objects.filter(pk=connection.pk).update(is_default=True)
    client.force_login(user)
    page = client.get(detail_url(connection)).content.decode()
    assert 'data-testid="default-badge"' in page
    assert 'data-testid="clear-default"' not in page and 'data-testid="make-default"' not in page


# --- credential reads ------------------------------------------------------


def read(connection, actor, job_id="", ip="192.0.2.10"):
    return audit.record(
        AuditRecord.Action.CREDENTIALS_READ,
        actor=actor,
        folder=connection.folder,
        target=("connection", connection.pk, connection.name),
        job_id=job_id,
        ip=ip,
    )


def test_credential_reads_lists_the_last_ten_of_this_connection(client, tree, make_user):
    viewer = make_user("viewer")
    robot = make_user("robot")
    assign(viewer, tree["finance"], "Viewer")
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True)
    other = ConnectionFactory(folder=tree["finance"], name="Other", sandbox=True)
    client.force_login(viewer)
    empty = client.get(detail_url(connection)).content.decode()
    assert 'data-testid="no-credential-reads"' in empty

    for n in range(12):
        read(connection, robot, job_id=f"job-{n}")
    read(other, robot, job_id="job-other")
    audit.record(
        AuditRecord.Action.API_KEY_CREATED, actor=robot, target=("connection", connection.pk, "x")
    )
    response = client.get(detail_url(connection))
    shown = [record.job_id for record in response.context["credential_reads"]]
    assert shown == [f"job-{n}" for n in range(11, 1, -1)]
    page = response.content.decode()
    assert "job-11" in page and "192.0.2.10" in page and "robot" in page
    assert "job-other" not in page
    # Not a tenant or folder administrator: no link to the audit log.
    assert 'href="/audit/' not in page


def test_credential_reads_cost_one_query_whatever_their_number(client, tree, tenant_admin):
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True)
    client.force_login(tenant_admin)
    read(connection, tenant_admin)
    with CaptureQueriesContext(db_connection) as one:
        client.get(detail_url(connection))
    for _ in range(15):
        read(connection, tenant_admin)
    with CaptureQueriesContext(db_connection) as many:
        response = client.get(detail_url(connection))
    assert len(one) == len(many)
    assert f'href="/audit/?connection={connection.pk}"' in response.content.decode()


def test_credential_reads_are_not_shown_to_who_cannot_see_the_connection(client, tree, make_user):
    stranger = make_user("stranger")
    assign(stranger, tree["hr"], "Folder Administrator")
    connection = ConnectionFactory(folder=tree["finance"], sandbox=True)
    read(connection, stranger, job_id="job-secret")
    client.force_login(stranger)
    response = client.get(detail_url(connection))
    assert response.status_code == 404
    assert b"job-secret" not in response.content
