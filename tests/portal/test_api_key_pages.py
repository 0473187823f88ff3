"""The API key pages, robot accounts and the audit log, answered by the
server: who may open each page and do each thing (403 / 404 otherwise),
what a new key looks like once and never again, and validation that keeps
what was typed."""

from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal import api_keys, audit
from portal.models import ApiKey, AuditRecord, RobotAccount, Role, RoleAssignment
from tests.at_once import at_once, needs_a_server_database
from tests.factories import FolderFactory, assign

OWN_KEYS = "/account/api-keys/"
ROBOTS = "/tenant/robots/"
AUDIT = "/audit/"
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "api-keys"}


def own_revoke_url(key) -> str:
    return reverse("api_key_revoke", args=[key.pk])


def robot_url(robot) -> str:
    return reverse("tenant_robot", args=[robot.pk])


def robot_revoke_url(robot, key) -> str:
    return reverse("tenant_robot_key_revoke", args=[robot.pk, key.pk])


def issue_key(owner, name="nightly", actor=None, **kwargs):
    return api_keys.issue(owner=owner, name=name, actor=actor or owner, **kwargs)


def make_robot(name="invoice-bot", actor=None):
    return api_keys.create_robot(name=name, description="Posts invoices", actor=actor)


@pytest.fixture
def ada(make_user):
    return make_user("ada")


# --- a person's own keys ---------------------------------------------------


def test_pages_need_a_signed_in_user(client, db):
    for url in (OWN_KEYS, "/account/api-keys/1/revoke/", ROBOTS, "/tenant/robots/1/", AUDIT):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    assert client.post(OWN_KEYS, {"name": "x"}).status_code == 302
    assert not ApiKey.objects.exists()


def test_empty_state_explains_keys_and_links_the_api_docs(client, ada):
    client.force_login(ada)
    response = client.get(OWN_KEYS)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="keys-empty"' in page
    assert "/api/v1/" in page
    assert 'href="/api/v1/docs"' in page
    # The lifetime is filled in with the default.
    assert 'name="days" value="90"' in page


def test_create_shows_the_raw_key_once(client, ada, settings):
    settings.PORTAL_API_KEY_DAYS = 30
    client.force_login(ada)
    assert 'name="days" value="30"' in client.get(OWN_KEYS).content.decode()
    response = client.post(OWN_KEYS, {"name": "Nightly sync", "days": "30", "folder": ""})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(user=ada)
    page = response.content.decode()
    raw = response.context["issued"].raw
    assert raw.startswith("cpk_") and raw in page
    assert "you won't see it again" in page
    assert key.digest == api_keys.digest(raw)
    assert key.name == "Nightly sync" and key.folder is None and key.created_by == ada
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert AuditRecord.objects.filter(
        action=AuditRecord.Action.API_KEY_CREATED, actor=ada, target_id=str(key.pk)
    ).exists()

    again = client.get(OWN_KEYS).content.decode()
    assert raw not in again
    assert f"cpk_{key.hint}…" in again
    assert "Nightly sync" in again and "Active" in again


def test_htmx_create_answers_with_the_keys_fragment(client, ada):
    client.force_login(ada)
    response = client.post(OWN_KEYS, {"name": "From htmx", "days": "7"}, **HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" not in page and 'id="api-keys"' in page
    assert response.context["issued"].raw in page
    assert ApiKey.objects.filter(user=ada, name="From htmx").count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "days": "12"}, "name", "Give the key a name"),
        ({"name": "x" * 81, "days": "12"}, "name", "longer than 80"),
        ({"name": "Sync", "days": "0"}, "days", "between 1 and 365 days"),
        ({"name": "Sync", "days": "366"}, "days", "between 1 and 365 days"),
        ({"name": "Sync", "days": "soon"}, "days", "whole number"),
        ({"name": "Sync", "days": ""}, "days", "lifetime in days"),
    ],
)
def test_invalid_input_is_refused_at_the_field_and_kept(client, ada, data, field, message):
    client.force_login(ada)
    response = client.post(OWN_KEYS, data)
    assert response.status_code == 400
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    page = response.content.decode()
    for value in data.values():
        if value and len(value) <= 80:
            assert f'value="{value}"' in page
    assert response.context["issued"] is None
    assert not ApiKey.objects.exists()


def test_a_second_active_key_of_the_same_name_is_refused(client, ada):
    issue_key(ada, "Nightly")
    client.force_login(ada)
    response = client.post(OWN_KEYS, {"name": "nightly", "days": "5"}, **HTMX)
    assert response.status_code == 400
    assert "already exists" in str(response.context["form"].errors["name"])
    assert 'value="nightly"' in response.content.decode()
    assert ApiKey.objects.filter(user=ada).count() == 1


def name_refusals(errors: list[Exception]) -> list[str]:
    """The name field's messages of ValidationErrors; anything else fails."""
    from django.core.exceptions import ValidationError

    assert all(isinstance(error, ValidationError) for error in errors), errors
    return [error.message_dict["name"][0] for error in errors]


@pytest.mark.django_db(transaction=True)
def test_two_requests_for_the_same_name_at_once_make_one_key(make_user):
    """The owner's keys are made one at a time; without that, each request
    would find the name free."""
    needs_a_server_database()
    owner = make_user("ada")
    made, refused = at_once(lambda: issue_key(owner, "Nightly"))
    assert len(made) == 1 and ApiKey.objects.filter(user=owner).count() == 1
    assert name_refusals(refused) == ["An active key named 'Nightly' already exists."] * 3


def test_an_expired_keys_name_can_be_used_again(client, ada):
    # An expired key offers no Revoke; its name must not stay taken for good.
    expired = issue_key(ada, "Nightly").key
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    client.force_login(ada)
    response = client.post(OWN_KEYS, {"name": "Nightly", "days": "5"})
    assert response.status_code == 200
    assert ApiKey.objects.filter(user=ada, name="Nightly").count() == 2


def test_folder_scope_offers_only_folders_the_user_sees(client, ada, tree):
    assign(ada, tree["finance"], "Automation User")
    client.force_login(ada)
    choices = dict(client.get(OWN_KEYS).context["form"].fields["folder"].choices)
    assert choices[tree["finance"].pk] == "Shared / Finance"
    assert choices[tree["payables"].pk] == "Shared / Finance / Payables"
    assert choices[ada.personal_workspace.pk] == ada.personal_workspace.name
    assert tree["hr"].pk not in choices and tree["shared"].pk not in choices

    refused = client.post(OWN_KEYS, {"name": "HR", "days": "5", "folder": tree["hr"].pk})
    assert refused.status_code == 400
    assert "folder" in refused.context["form"].errors
    assert not ApiKey.objects.exists()

    response = client.post(
        OWN_KEYS, {"name": "Payables", "days": "5", "folder": tree["payables"].pk}
    )
    assert response.status_code == 200
    assert ApiKey.objects.get(user=ada).folder == tree["payables"]
    assert "Shared / Finance / Payables" in client.get(OWN_KEYS).content.decode()


def test_list_shows_status_expiry_and_last_use(client, ada):
    active = issue_key(ada, "Active one").key
    expired = issue_key(ada, "Old one").key
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    revoked = issue_key(ada, "Gone").key
    api_keys.revoke(revoked, actor=ada)
    api_keys.authenticate(issue_key(ada, "Used").raw, ip="203.0.113.9")
    client.force_login(ada)
    response = client.get(OWN_KEYS)
    page = response.content.decode()
    statuses = {key.name: key.status for key in response.context["keys"]}
    assert statuses == {
        "Active one": "Active",
        "Old one": "Expired",
        "Gone": "Revoked",
        "Used": "Active",
    }
    assert "from 203.0.113.9" in page
    # Only active keys offer Revoke.
    assert own_revoke_url(active) in page
    assert own_revoke_url(expired) not in page and own_revoke_url(revoked) not in page


def test_list_queries_do_not_grow_with_keys(client, ada, tree):
    assign(ada, tree["finance"], "Automation User")
    client.force_login(ada)
    issue_key(ada, "k0", folder=tree["finance"])
    with CaptureQueriesContext(db_connection) as few:
        client.get(OWN_KEYS)
    for n in range(1, 15):
        issue_key(ada, f"k{n}", folder=tree["payables"] if n % 2 else None)
    with CaptureQueriesContext(db_connection) as many:
        client.get(OWN_KEYS)
    assert len(many) == len(few)


def test_revoke_asks_then_revokes(client, ada):
    key = issue_key(ada).key
    client.force_login(ada)
    confirm = client.get(own_revoke_url(key))
    assert confirm.status_code == 200
    assert "Revoke the API key nightly?" in confirm.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None  # asking changes nothing

    response = client.post(own_revoke_url(key))
    assert response.status_code == 302 and response["Location"] == OWN_KEYS
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditRecord.objects.filter(
        action=AuditRecord.Action.API_KEY_REVOKED, actor=ada, target_id=str(key.pk)
    ).exists()
    # Again: nothing more happens, the page says so.
    again = client.post(own_revoke_url(key), follow=True)
    assert "already revoked" in again.content.decode()
    assert AuditRecord.objects.filter(action=AuditRecord.Action.API_KEY_REVOKED).count() == 1


def test_nobody_revokes_someone_elses_key(client, ada, make_user, tenant_admin):
    key = issue_key(ada).key
    bob = make_user("bob")
    robot = make_robot(actor=tenant_admin)
    for user in (bob, tenant_admin):
        client.force_login(user)
        assert client.get(own_revoke_url(key)).status_code == 404
        assert client.post(own_revoke_url(key)).status_code == 404
    # Not through a robot's page either: the key is not the robot's.
    assert client.get(robot_revoke_url(robot, key)).status_code == 404
    assert client.post(robot_revoke_url(robot, key)).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.API_KEY_REVOKED).exists()


def test_a_robot_signed_in_somehow_manages_no_keys(client, tenant_admin):
    robot = make_robot(actor=tenant_admin)
    client.force_login(robot.user)
    assert client.get(OWN_KEYS).status_code == 403
    assert client.post(OWN_KEYS, {"name": "mine", "days": "3"}).status_code == 403
    assert not ApiKey.objects.exists()


# --- robot accounts ------------------------------------------------------


@pytest.mark.parametrize("role", ["Folder Administrator", "Automation Developer", None])
def test_robot_pages_are_for_tenant_administrators_only(
    client, tree, make_user, tenant_admin, role
):
    user = make_user("member")
    if role:
        assign(user, tree["shared"], role)
    robot = make_robot(actor=tenant_admin)
    key = issue_key(robot.user, actor=tenant_admin).key
    client.force_login(user)
    assert client.get(ROBOTS).status_code == 403
    assert client.post(ROBOTS, {"name": "sneaky-bot"}).status_code == 403
    assert client.get(robot_url(robot)).status_code == 403
    assert client.post(robot_url(robot), {"name": "k", "days": "3"}).status_code == 403
    assert client.get(robot_revoke_url(robot, key)).status_code == 403
    assert client.post(robot_revoke_url(robot, key)).status_code == 403
    audit_page = client.get(AUDIT)
    if role == "Folder Administrator":
        # The records of the folders they administer only: none of the tenant's.
        assert audit_page.status_code == 200
        assert not audit_page.context["page"].object_list
    else:
        assert audit_page.status_code == 403
    assert not RobotAccount.objects.filter(user__username="sneaky-bot").exists()
    assert ApiKey.objects.filter(user=robot.user).count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None


def test_admin_creates_a_robot(client, tenant_admin):
    client.force_login(tenant_admin)
    empty = client.get(ROBOTS)
    assert 'data-testid="robots-empty"' in empty.content.decode()
    response = client.post(ROBOTS, {"name": "Invoice-Bot", "description": "Posts invoices"})
    robot = RobotAccount.objects.get()
    assert response.status_code == 302 and response["Location"] == robot_url(robot)
    assert robot.user.username == "invoice-bot"
    assert not robot.user.has_usable_password()
    assert robot.created_by == tenant_admin
    assert AuditRecord.objects.filter(action=AuditRecord.Action.ROBOT_CREATED).count() == 1
    listing = client.get(ROBOTS).content.decode()
    assert "invoice-bot" in listing and "Posts invoices" in listing


@pytest.mark.django_db(transaction=True)
def test_two_requests_for_the_same_robot_name_at_once_make_one_robot(make_user):
    """Both find the name free; the username's unique index stops the
    second, which answers as a taken name (not a server error)."""
    needs_a_server_database()
    admin = make_user("root-admin")
    made, refused = at_once(lambda: make_robot("payer", actor=admin))
    assert len(made) == 1 and RobotAccount.objects.get().user.username == "payer"
    assert name_refusals(refused) == ["The name 'payer' is taken."] * 3
    assert AuditRecord.objects.filter(action=AuditRecord.Action.ROBOT_CREATED).count() == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Give the robot account a name"), ("no spaces", "lower-case"), ("root", "taken")],
)
def test_robot_name_errors_keep_what_was_typed(client, tenant_admin, name, message):
    client.force_login(tenant_admin)
    response = client.post(ROBOTS, {"name": name, "description": "Keeps this"})
    assert response.status_code == 400
    assert message in str(response.context["form"].errors["name"])
    assert 'value="Keeps this"' in response.content.decode()
    assert not RobotAccount.objects.exists()


def test_unknown_robot_is_404(client, tenant_admin, ada):
    client.force_login(tenant_admin)
    assert client.get(reverse("tenant_robot", args=[999])).status_code == 404
    # A person's user id is no robot's id by accident of numbering.
    assert not RobotAccount.objects.filter(pk=ada.pk).exists()


def test_admin_manages_a_robots_keys(client, tenant_admin, tree):
    robot = make_robot(actor=tenant_admin)
    assign(robot.user, tree["finance"], "Automation User")
    client.force_login(tenant_admin)
    page = client.get(robot_url(robot))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="keys-empty"' in body
    assert reverse("folder_access", args=[tree["finance"].pk]) in body
    # The scope offers the robot's folders, not the administrator's.
    choices = dict(page.context["form"].fields["folder"].choices)
    assert tree["finance"].pk in choices and tree["hr"].pk not in choices

    response = client.post(
        robot_url(robot), {"name": "prod", "days": "10", "folder": tree["finance"].pk}, **HTMX
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(user=robot.user)
    assert key.created_by == tenant_admin and key.folder == tree["finance"]
    assert response.context["issued"].raw in response.content.decode()
    assert not ApiKey.objects.filter(user=tenant_admin).exists()

    confirm = client.get(robot_revoke_url(robot, key))
    assert confirm.status_code == 200
    assert "invoice-bot" in confirm.content.decode()
    response = client.post(robot_revoke_url(robot, key))
    assert response.status_code == 302 and response["Location"] == robot_url(robot)
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_robots_key_is_not_revoked_through_another_robot(client, tenant_admin):
    first, second = make_robot("first-bot", tenant_admin), make_robot("second-bot", tenant_admin)
    key = issue_key(first.user, actor=tenant_admin).key
    client.force_login(tenant_admin)
    assert client.post(robot_revoke_url(second, key)).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_folder_access_page_gives_a_robot_a_role(client, tenant_admin, tree):
    robot = make_robot(actor=tenant_admin)
    client.force_login(tenant_admin)
    access = reverse("folder_access", args=[tree["hr"].pk])
    role = Role.objects.get(name="Automation User")
    response = client.post(access, {"user": "invoice-bot", "role": role.pk})
    assert response.status_code == 302
    assert RoleAssignment.objects.filter(user=robot.user, folder=tree["hr"]).exists()
    assert "invoice-bot" in client.get(access).content.decode()
    robot_page = client.get(robot_url(robot)).content.decode()
    assert 'data-testid="robot-roles"' in robot_page and "HR" in robot_page


# --- the audit log -------------------------------------------------------


def test_audit_log_lists_newest_first_with_every_column(client, tenant_admin, ada, tree):
    client.force_login(tenant_admin)
    empty = client.get(AUDIT)
    assert empty.status_code == 200
    assert 'data-testid="audit-empty"' in empty.content.decode()

    key = issue_key(ada, "Reader").key
    audit.record(
        AuditRecord.Action.CREDENTIALS_READ,
        actor=ada,
        api_key=key,
        folder=tree["finance"],
        target=("connection", 42, "Salesforce production"),
        job_id="job-77",
        ip="198.51.100.4",
    )
    response = client.get(AUDIT)
    page = response.content.decode()
    records = list(response.context["page"].object_list)
    assert [r.action for r in records] == ["credentials.read", "api_key.created"]
    for text in ("ada", "Reader (", "Credentials read", "Salesforce production", "Finance",
                 "job-77", "198.51.100.4"):  # fmt: skip
        assert text in page, text


def test_audit_log_filters_by_action_and_text(client, tenant_admin, ada, make_user):
    bob = make_user("bob")
    issue_key(ada, "ada-key")
    issue_key(bob, "bob-key")
    audit.record(AuditRecord.Action.CREDENTIALS_READ, actor=bob, target=("connection", 1, "Jira"))
    client.force_login(tenant_admin)

    def shown(**params):
        return [
            (r.actor_name, r.action) for r in client.get(AUDIT, params).context["page"].object_list
        ]

    assert shown(action="credentials.read") == [("bob", "credentials.read")]
    assert shown(q="ADA") == [("ada", "api_key.created")]
    assert shown(q="jira") == [("bob", "credentials.read")]
    assert shown(q="bob-key") == [("bob", "api_key.created")]
    assert shown(action="api_key.created", q="bob") == [("bob", "api_key.created")]
    assert shown(action="not-an-action") == [
        ("bob", "credentials.read"),
        ("bob", "api_key.created"),
        ("ada", "api_key.created"),
    ]
    nothing = client.get(AUDIT, {"q": "nobody"})
    assert 'data-testid="audit-no-match"' in nothing.content.decode()


def test_audit_log_pages_by_fifty_keeping_filters(client, tenant_admin, ada):
    AuditRecord.objects.bulk_create(
        [
            AuditRecord(
                action=AuditRecord.Action.CREDENTIALS_READ,
                actor_name="ada",
                target_name=f"Connection {n}",
            )
            for n in range(120)
        ]
    )
    client.force_login(tenant_admin)
    with CaptureQueriesContext(db_connection) as first_page:
        response = client.get(AUDIT, {"action": "credentials.read"})
    page = response.context["page"]
    assert len(page.object_list) == 50 and page.paginator.num_pages == 3
    assert "?action=credentials.read&amp;page=2" in response.content.decode()
    with CaptureQueriesContext(db_connection) as last_page:
        last = client.get(AUDIT, {"action": "credentials.read", "page": 3})
    assert len(last.context["page"].object_list) == 20
    assert len(first_page) == len(last_page)


def test_nav_shows_api_keys_to_everyone_and_tenant_tabs_to_admins(client, ada, tenant_admin):
    client.force_login(ada)
    page = client.get(OWN_KEYS).content.decode()
    assert 'href="/account/api-keys/"' in page
    assert 'href="/tenant/robots/"' not in page and 'href="/audit/"' not in page
    client.force_login(tenant_admin)
    page = client.get(ROBOTS).content.decode()
    assert 'href="/tenant/robots/"' in page and 'href="/audit/"' in page


def test_audit_records_outlive_the_user_key_and_folder_they_name(
    client, tenant_admin, make_user, tree
):
    """Records keep their links as written, and the log still shows them
    once the user, key and folder are deleted (nothing checks or clears the
    links: a credential read locks no row of theirs)."""
    leaver = make_user("leaver")
    key = issue_key(leaver, "Old job").key
    folder = FolderFactory(name="Closed project", parent=tree["shared"])
    audit.record(
        AuditRecord.Action.CREDENTIALS_READ,
        actor=leaver,
        api_key=key,
        folder=folder,
        target=("connection", 7, "Legacy CRM"),
    )
    ids = (leaver.pk, key.pk, folder.pk)
    folder.delete()
    leaver.delete()  # and with it the key

    record = AuditRecord.objects.get(action=AuditRecord.Action.CREDENTIALS_READ)
    assert (record.actor_id, record.api_key_id, record.folder_id) == ids
    client.force_login(tenant_admin)
    page = client.get(AUDIT)
    assert page.status_code == 200
    text = page.content.decode()
    assert "leaver" in text and "Old job (" in text and "Legacy CRM" in text
    assert "Closed project" not in text  # its name was never copied; the link leads nowhere
