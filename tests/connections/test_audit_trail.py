"""The audit trail: every write path records what it changed, through one
function called from the domain functions, so the pages, the API, the admin
and the command-line client record alike.

The walk below calls each write function of the domain modules and expects
its record; a public function of those modules that is neither walked nor
named as not changing anything fails the test, so a new write path cannot
skip the audit log unnoticed."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType

import pytest
from django.urls import reverse

from connections.actions import (
    check,
    create,
    credentials,
    defaults,
    details,
    lifecycle,
    oauth_connections,
)
from connections.catalog import get_catalog
from connections.health import CheckResult
from connections.models import Connection
from connections.triggers import configure, delivery, jobs, processes, replay
from portal import actions, api_keys
from portal.auth import invitations
from portal.models import AuditRecord, Folder, Role, RoleAssignment, TenantSettings
from tests.connections.fake_provider import GOOD_TOKEN
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

# Public functions of the domain modules that change nothing worth an audit
# record, each with the reason.
NOT_CHANGES = {
    "check.check_rows": "builds a health check's rows for the connection's history",
    "check.record_check": "a health check, kept in the connection's history",
    "check.record_state_change": "a state change, kept in the connection's history",
    "check.state_change": "a state change, kept in the connection's history",
    "check.copy_saved": "copies fields between instances",
    "check.run_connection_check": "sends a health check, records nothing",
    "check.record_checks": "health checks, kept in the connections' history",
    "check.check_connection": "a health check (Check now), kept in the connection's history",
    "check.check_connections": "the sweep's health checks",
    "lifecycle.deletion_impact": "reads what a delete would take",
    "actions.folder_deletion_impact": "reads what a delete would take",
    "actions.check_folder_place": "validates",
    "oauth_connections.complete_authorization": "ends a sign-in through "
    "store_oauth_connection, which records",
    "oauth_connections.connect_with_grant": "through store_oauth_connection",
    "oauth_connections.reconnect_with_grant": "through store_oauth_connection",
    "oauth_connections.finish_with_token": "through store_oauth_connection",
    "oauth_connections.identity_change_warning": "words for a page",
    "oauth_connections.confirm_identity_change": "through store_oauth_connection",
    "create.create_oauth_connection": "through store_oauth_connection (connect_with_grant)",
    "processes.new_signing_secret": "makes a value",
    "processes.clean_webhook_url": "validates",
    "processes.save_process": "through create_process and edit_process, which record",
    "processes.signing_secret": "reads",
    "configure.granted_scopes": "reads",
    "configure.queue_poll": "a poll (Run poll now), kept in the trigger's history",
    "invitations.invitation_for_token": "reads",
    "invitations.remember_invitation": "the visitor's session",
    "invitations.pending_invitation_in_session": "reads",
    "invitations.forget_invitation": "the visitor's session",
    "invitations.invitation_url": "makes a value",
    "api_keys.digest": "makes a value",
    "api_keys.clean_key_name": "validates",
    "api_keys.clean_expiry": "validates",
    "api_keys.clean_scope": "validates",
    "api_keys.authenticate": "reads (its last use is kept on the key)",
    "api_keys.in_scope": "reads",
    "api_keys.clean_robot_name": "validates",
    "jobs.claimable": "reads",
    "jobs.pending_jobs": "reads",
    "jobs.clean_lease_seconds": "validates",
    "jobs.require_queue": "validates",
    "jobs.take": "a robot's run of a job, kept on the job",
    "jobs.claim_job": "a robot's run of a job, kept on the job",
    "jobs.complete_job": "a robot's run of a job, kept on the job",
    "jobs.fail_job": "a robot's run of a job, kept on the job",
    "jobs.extend_lease": "a robot's run of a job, kept on the job",
    "jobs.held_with": "makes a value",
    "replay.first_job": "reads",
    "replay.replay_event": "a run of a process, kept in the trigger's history",
    "delivery.retry_wait": "makes a value",
    "delivery.payload": "makes a value",
    "delivery.webhook_policy": "makes a value",
    "delivery.deliver_job": "a delivery, kept in the trigger's history",
    "delivery.retry_delivery": "a delivery, kept in the trigger's history",
}
MODULES: list[ModuleType] = [
    create,
    credentials,
    defaults,
    details,
    lifecycle,
    oauth_connections,
    check,
    actions,
    processes,
    configure,
    invitations,
    api_keys,
    jobs,
    replay,
    delivery,
]


def public_functions() -> set[str]:
    found = set()
    for module in MODULES:
        short = module.__name__.rsplit(".", 1)[-1]
        for name, value in vars(module).items():
            if (
                inspect.isfunction(value)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found.add(f"{short}.{name}")
    return found


@pytest.fixture
def world(fakehub, tree, tenant_admin, make_user, settings):
    settings.PORTAL_SANDBOX_ENABLED = True
    return {"admin": tenant_admin, "folder": tree["finance"], "user": make_user("ada")}


def make_fakehub(world, fakehub, name="Robot") -> Connection:
    return create.create_secret_connection(
        folder=world["folder"],
        connector=fakehub,
        auth=fakehub.auth_type("pat"),
        name=name,
        description="",
        fields={},
        secret={"token": GOOD_TOKEN},
        created_by=world["admin"],
    )


def walk(world, fakehub) -> list[tuple[str, Callable[[], object], str]]:
    """(function, a call of it, the action it records), in an order where each
    call finds what the earlier ones made."""
    admin, folder = world["admin"], world["folder"]
    made: dict = {}

    def once(key: str, make: Callable[[], object]):
        if key not in made:
            made[key] = make()
        return made[key]

    def connection() -> Connection:
        return once("connection", lambda: make_fakehub(world, fakehub))

    def sandbox() -> Connection:
        return once(
            "sandbox", lambda: ConnectionFactory(folder=folder, sandbox=True, secret={"token": "t"})
        )

    def own_app() -> Connection:
        return once(
            "own_app",
            lambda: ConnectionFactory(
                folder=folder,
                sandbox=True,
                auth_type="oauth2_authorization_code",
                own_app=True,
                secret={"access_token": "a", "client_id": "c", "client_secret": "s"},
            ),
        )

    def process():
        if "process" not in made:
            made["process"] = processes.create_process(
                folder=folder, name="Book invoices", job_queue=True, created_by=admin
            ).process
        return made["process"]

    def trigger():
        if "trigger" not in made:
            made["trigger"] = configure.create_trigger(
                connection=sandbox(),
                event_key="record_created",
                filters={},
                process=process(),
                created_by=admin,
            )
        return made["trigger"]

    def reconnect():
        existing = own_app()
        return oauth_connections.store_oauth_connection(
            actor=admin,
            folder=folder,
            connector=fakehub_sandbox(),
            auth=fakehub_sandbox().auth_type("oauth2_authorization_code"),
            own_app=True,
            secret={"access_token": "b", "client_id": "c", "client_secret": "s"},
            warning=None,
            result=CheckResult(ok=True, identity="someone-else"),
            name=existing.name,
            description="",
            fields={},
            connection=existing,
        )

    def fakehub_sandbox():
        return get_catalog().get("sandbox")

    def new_folder():
        return once(
            "folder", lambda: actions.create_folder(name="Ledgers", parent=folder, actor=admin)
        )

    def rename():
        target = new_folder()
        target.name = "General ledgers"
        return actions.save_folder(target, actor=admin)

    def move():
        target = new_folder()
        target.parent = Folder.objects.get(name="HR")
        return actions.save_folder(target, actor=admin)

    def assignment():
        if "assignment" not in made:
            made["assignment"] = actions.assign_role(
                folder=folder,
                role=Role.objects.get(name="Viewer"),
                user=world["user"],
                assigned_by=admin,
            )
        return made["assignment"]

    def invitation():
        if "invitation" not in made:
            made["invitation"] = invitations.send_invitation(
                email="new@example.com", invited_by=admin
            )
        return made["invitation"]

    def robot():
        return once(
            "robot", lambda: api_keys.create_robot(name="nightly", description="", actor=admin)
        )

    def key():
        return once("key", lambda: api_keys.issue(owner=robot().user, name="k", actor=admin).key)

    A = AuditRecord.Action
    return [
        ("create.create_secret_connection", connection, A.CONNECTION_CREATED),
        (
            "details.edit_connection",
            lambda: details.edit_connection(
                connection=connection(),
                name="Robot 2",
                description="",
                polling_interval_seconds=connection().polling_interval_seconds,
                fields={},
                actor=admin,
            ),
            A.CONNECTION_EDITED,
        ),
        (
            "credentials.replace_secret",
            lambda: credentials.replace_secret(
                connection=connection(), secret={"token": GOOD_TOKEN}, actor=admin
            ),
            A.SECRET_REPLACED,
        ),
        (
            "credentials.replace_client_secret",
            lambda: credentials.replace_client_secret(
                connection=own_app(), client_secret="s2", actor=admin
            ),
            A.CLIENT_SECRET_REPLACED,
        ),
        ("oauth_connections.store_oauth_connection", reconnect, A.CONNECTION_RECONNECTED),
        (
            "lifecycle.set_enabled",
            lambda: lifecycle.set_enabled(connection=connection(), enabled=False, actor=admin),
            A.CONNECTION_DISABLED,
        ),
        (
            "lifecycle.set_enabled",
            lambda: lifecycle.set_enabled(connection=connection(), enabled=True, actor=admin),
            A.CONNECTION_ENABLED,
        ),
        (
            "defaults.set_default",
            lambda: defaults.set_default(connection=connection(), actor=admin),
            A.DEFAULT_SET,
        ),
        (
            "defaults.clear_default",
            lambda: defaults.clear_default(connection=connection(), actor=admin),
            A.DEFAULT_CLEARED,
        ),
        ("processes.create_process", process, A.PROCESS_CREATED),
        (
            "processes.edit_process",
            lambda: processes.edit_process(process(), name="Book all invoices", job_queue=True),
            A.PROCESS_EDITED,
        ),
        (
            "processes.replace_signing_secret",
            lambda: processes.replace_signing_secret(process()),
            A.PROCESS_EDITED,
        ),
        ("configure.create_trigger", trigger, A.TRIGGER_CREATED),
        (
            "configure.edit_trigger",
            lambda: configure.edit_trigger(trigger(), filters={"title_contains": "invoice"}),
            A.TRIGGER_EDITED,
        ),
        (
            "configure.disable_trigger",
            lambda: configure.disable_trigger(trigger()),
            A.TRIGGER_DISABLED,
        ),
        (
            "configure.enable_trigger",
            lambda: configure.enable_trigger(trigger()),
            A.TRIGGER_ENABLED,
        ),
        (
            "configure.delete_trigger",
            lambda: configure.delete_trigger(trigger()),
            A.TRIGGER_DELETED,
        ),
        (
            "processes.delete_process",
            lambda: processes.delete_process(process()),
            A.PROCESS_DELETED,
        ),
        (
            "lifecycle.delete_connection",
            lambda: lifecycle.delete_connection(connection=connection(), actor=admin),
            A.CONNECTION_DELETED,
        ),
        ("actions.create_folder", new_folder, A.FOLDER_CREATED),
        ("actions.save_folder", rename, A.FOLDER_RENAMED),
        ("actions.save_folder", move, A.FOLDER_MOVED),
        (
            "actions.rename_folder",
            lambda: actions.rename_folder(new_folder(), name="Old ledgers", actor=admin),
            A.FOLDER_RENAMED,
        ),
        (
            "actions.move_folder",
            lambda: actions.move_folder(new_folder(), parent=folder, actor=admin),
            A.FOLDER_MOVED,
        ),
        (
            "actions.delete_folder",
            lambda: actions.delete_folder(new_folder(), actor=admin),
            A.FOLDER_DELETED,
        ),
        ("actions.assign_role", assignment, A.ROLE_ASSIGNED),
        (
            "actions.remove_assignment",
            lambda: actions.remove_assignment(assignment=assignment(), actor=admin),
            A.ROLE_REMOVED,
        ),
        (
            "actions.set_governance",
            lambda: actions.set_governance(
                allow_shared_connection_creation=False, changed_by=admin
            ),
            A.GOVERNANCE_CHANGED,
        ),
        (
            "actions.set_governance",
            lambda: actions.set_governance(
                allow_shared_connection_creation=False, read_only=True, changed_by=admin
            ),
            A.TENANT_SETTINGS_CHANGED,
        ),
        ("invitations.send_invitation", invitation, A.INVITATION_SENT),
        (
            "invitations.revoke_invitation",
            lambda: invitations.revoke_invitation(invitation(), actor=admin),
            A.INVITATION_REVOKED,
        ),
        ("api_keys.create_robot", robot, A.ROBOT_CREATED),
        ("api_keys.issue", key, A.API_KEY_CREATED),
        ("api_keys.revoke", lambda: api_keys.revoke(key(), actor=admin), A.API_KEY_REVOKED),
    ]


def test_every_write_path_records_what_it_changed(world, fakehub, provider):
    steps = walk(world, fakehub)
    walked = {name for name, _, _ in steps}
    unexamined = public_functions() - walked - set(NOT_CHANGES)
    assert not unexamined, (
        "Public functions neither walked nor named as changing nothing (record their "
        "changes with portal.audit.record and add them to the walk):\n"
        + "\n".join(sorted(unexamined))
    )
    silent = []
    for name, call, action in steps:
        before = AuditRecord.objects.count()
        call()
        made = list(AuditRecord.objects.order_by("pk")[before:])
        if action not in {record.action for record in made}:
            silent.append(f"{name}: expected {action}, recorded {[r.action for r in made]}")
    assert not silent, "\n".join(silent)
    # Every record names who did it (never a secret: the leak guard searches the pages).
    assert (
        not AuditRecord.objects.filter(actor__isnull=True)
        .exclude(
            action__in=[AuditRecord.Action.PROCESS_EDITED, AuditRecord.Action.PROCESS_DELETED]
            + [a for a in AuditRecord.Action.values if a.startswith("trigger.")]
        )
        .exists()
    )


def test_a_reconnect_records_the_account_before_and_after(world, fakehub, provider):
    steps = dict((name, call) for name, call, _ in walk(world, fakehub))
    steps["oauth_connections.store_oauth_connection"]()
    record = AuditRecord.objects.get(action=AuditRecord.Action.CONNECTION_RECONNECTED)
    assert record.detail.endswith("→ someone-else")
    assert record.folder_id == world["folder"].pk


def test_pages_record_the_user_and_address(client, world, fakehub, provider):
    connection = make_fakehub(world, fakehub)
    client.force_login(world["admin"])
    url = reverse("connection_set_enabled", args=[connection.folder_id, connection.pk])
    response = client.post(url, {"enabled": "0"}, REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302
    record = AuditRecord.objects.get(action=AuditRecord.Action.CONNECTION_DISABLED)
    assert (record.actor_id, record.ip_address) == (world["admin"].pk, "192.0.2.44")
    assert (record.target_type, record.target_id) == ("connection", str(connection.pk))


def test_a_change_through_the_api_names_its_key(client, world, fakehub, provider):
    connection = make_fakehub(world, fakehub)
    RoleAssignment.objects.create(
        folder=world["folder"],
        role=Role.objects.get(name="Folder Administrator"),
        user=world["user"],
    )
    issued = api_keys.issue(owner=world["user"], name="ops", actor=world["user"])
    response = client.delete(
        f"/api/v1/connections/{connection.pk}",
        HTTP_AUTHORIZATION=f"Bearer {issued.raw}",
        REMOTE_ADDR="198.51.100.9",
    )
    assert response.status_code in {200, 204}, response.content
    record = AuditRecord.objects.get(action=AuditRecord.Action.CONNECTION_DELETED)
    assert record.actor_id == world["user"].pk and record.api_key_name.startswith("ops (")
    assert record.ip_address == "198.51.100.9"


def test_the_admin_changes_through_the_domain_functions(client, world, tree):
    client.force_login(world["admin"])
    folder = tree["hr"]
    url = reverse("admin:portal_folder_change", args=[folder.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data.update({"name": "People", "assignments-TOTAL_FORMS": "0"})
    data.update({"assignments-INITIAL_FORMS": "0", "_save": "Save"})
    response = client.post(url, data)
    assert response.status_code == 302
    record = AuditRecord.objects.get(action=AuditRecord.Action.FOLDER_RENAMED)
    assert record.detail == "HR → People" and record.actor_id == world["admin"].pk
    tenant = TenantSettings.load()
    url = reverse("admin:portal_tenantsettings_change", args=[tenant.pk])
    response = client.post(
        url,
        {
            "allow_shared_connection_creation": "",
            "min_polling_interval_seconds": "120",
            "read_only": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    assert AuditRecord.objects.filter(action=AuditRecord.Action.GOVERNANCE_CHANGED).exists()
    assert AuditRecord.objects.filter(action=AuditRecord.Action.TENANT_SETTINGS_CHANGED).exists()


def test_failed_sign_ins_and_the_lockout_are_recorded(client, make_user, settings):
    make_user("bob", password="right-password-1")
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        client.post(reverse("account_login"), {"login": "bob", "password": "wrong"})
    failed = AuditRecord.objects.filter(action=AuditRecord.Action.SIGN_IN_FAILED)
    assert failed.count() >= settings.AXES_FAILURE_LIMIT
    assert {record.target_name for record in failed} == {"bob"}
    assert AuditRecord.objects.filter(
        action=AuditRecord.Action.LOCKED_OUT, target_name="bob"
    ).exists()
    assert not AuditRecord.objects.filter(detail__contains="wrong").exists()


def test_records_cannot_be_changed_or_deleted(world):
    actions.create_folder(name="Kept", parent=None, actor=world["admin"])
    record = AuditRecord.objects.get()
    record.detail = "rewritten"
    with pytest.raises(ValueError):
        record.save()
    with pytest.raises(ValueError):
        record.delete()
    assert AuditRecord.objects.get().detail != "rewritten"
