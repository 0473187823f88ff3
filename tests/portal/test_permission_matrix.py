"""Every page x every role x where the folder stands, through HTTP: one
exact status per row. A walk of the URLconf fails for any page (or API
endpoint) that no row covers.

The expected answers come from the role definitions in the issue, written out
here rather than derived from the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from connections import sandbox, sandbox_provider, vault
from connections.models import Connection, Job, OAuthFlow, Process, Trigger, TriggerEvent
from portal import api_keys
from portal.models import Invitation, TenantSettings
from portal.permissions import Action, can
from tests.connections.api.test_permission_matrix import API_URL_NAMES
from tests.factories import ConnectionFactory, FolderFactory, assign
from tests.solutions import test_deploy_permission_matrix as deploy_matrix
from tests.solutions import test_permission_matrix as solutions_matrix

TENANT_ADMIN = "Tenant administrator"
TRIGGERS_AND_PROCESSES = {"view_triggers", "manage_triggers", "view_processes", "manage_processes"}
ROLE_ACTIONS = {
    "Folder Administrator": {"view", "use", "create", "edit", "delete", "manage"}
    | TRIGGERS_AND_PROCESSES,
    "Automation Developer": {"view", "use", "create", "edit", "delete"} | TRIGGERS_AND_PROCESSES,
    "Automation User": {"view", "use"},
    "Viewer": {"view", "view_triggers", "view_processes"},
    # A superuser: everything in the shared folders, nothing in a workspace.
    TENANT_ADMIN: {"view", "use", "create", "edit", "delete", "manage"} | TRIGGERS_AND_PROCESSES,
    None: set(),
}
ACTION_CODENAMES = {
    "create": Action.CREATE_CONNECTIONS,
    "edit": Action.EDIT_CONNECTIONS,
    "delete": Action.DELETE_CONNECTIONS,
    "manage": Action.MANAGE_FOLDER_ACCESS,
}
# Where the folder stands, relative to the role given on Finance.
PLACES = ["assigned", "subfolder", "unrelated", "other_workspace"]
SECRET = {"token": "sbx_matrix_secret"}
OWN_APP_SECRET = {
    "client_id": "matrix-app",
    "client_secret": "matrix-app-secret",
    "access_token": "matrix-access",
    "refresh_token": "matrix-refresh",
}


@dataclass(frozen=True)
class FolderPage:
    """A page in a folder: 404 where the folder (or its connection) is not
    visible, ``ok`` where the role holds ``needs``, 403 otherwise."""

    url_name: str
    method: str
    # view, use, create, edit, delete or manage (connections and access);
    # manage_parent (Folder - Manage access on the folder's parent);
    # view_triggers, manage_triggers, view_processes or manage_processes
    needs: str
    ok: int
    # folder, connection, own_app, flow, assignment, process, job, trigger, trigger_job,
    # trigger_event
    target: str = "folder"
    data: dict = field(default_factory=dict)


FOLDER_PAGES = [
    FolderPage("folder_detail", "get", "view", 302),
    FolderPage("folder_subfolders", "get", "view", 200),
    FolderPage("folder_subfolders", "post", "manage", 400),
    FolderPage("folder_access", "get", "manage", 200),
    FolderPage("folder_access", "post", "manage", 400),
    FolderPage("assignment_remove", "get", "manage", 200, "assignment"),
    FolderPage("assignment_remove", "post", "manage", 302, "assignment"),
    # Folder settings: the tab opens with Folder - Manage access; renaming,
    # moving and deleting the folder need it on its parent (manage_parent).
    FolderPage("folder_settings", "get", "manage", 200),
    FolderPage("folder_rename", "post", "manage_parent", 400),
    FolderPage("folder_move", "post", "manage_parent", 400),
    FolderPage("folder_delete", "get", "manage_parent", 200),
    FolderPage("folder_delete", "post", "manage_parent", 400),
    FolderPage("folder_connections", "get", "view", 200),
    FolderPage("connection_add", "get", "create", 200),
    FolderPage("connection_add_auth", "get", "create", 200),
    FolderPage("connection_add_details", "get", "create", 200),
    FolderPage("connection_add_details", "post", "create", 400),
    FolderPage("connection_detail", "get", "view", 200, "connection"),
    FolderPage("connection_edit", "get", "edit", 200, "connection"),
    FolderPage("connection_edit", "post", "edit", 400, "connection"),
    FolderPage("connection_replace_secret", "get", "edit", 200, "connection"),
    FolderPage("connection_replace_secret", "post", "edit", 400, "connection"),
    FolderPage("connection_check", "post", "use", 302, "connection"),
    # Asked outside htmx it sends to the page, after the same check.
    FolderPage("connection_check_progress", "get", "use", 302, "connection"),
    FolderPage("connection_set_enabled", "post", "edit", 302, "connection"),
    FolderPage("connection_set_default", "post", "edit", 302, "connection", {"default": "1"}),
    FolderPage("connection_delete", "get", "delete", 200, "connection"),
    FolderPage("connection_delete", "post", "delete", 302, "connection"),
    FolderPage("connection_reconnect", "get", "edit", 200, "own_app"),
    # Without htmx, a page that links to the provider.
    FolderPage("connection_reconnect", "post", "edit", 200, "own_app"),
    FolderPage("connection_replace_client_secret", "get", "edit", 200, "own_app"),
    FolderPage("connection_replace_client_secret", "post", "edit", 400, "own_app"),
    # The user's own sign-in that came back as another account: to confirm
    # it replaces the connection's credentials, so it needs Edit there.
    FolderPage("oauth_confirm_identity", "get", "edit", 200, "flow"),
    FolderPage("oauth_confirm_identity", "post", "edit", 302, "flow"),
    FolderPage("folder_processes", "get", "view_processes", 200),
    FolderPage("process_add", "get", "manage_processes", 200),
    FolderPage("process_add", "post", "manage_processes", 400),
    FolderPage("process_detail", "get", "view_processes", 200, "process"),
    FolderPage("process_edit", "get", "manage_processes", 200, "process"),
    FolderPage("process_edit", "post", "manage_processes", 400, "process"),
    FolderPage("process_replace_secret", "get", "manage_processes", 200, "process"),
    FolderPage("process_replace_secret", "post", "manage_processes", 200, "process"),
    FolderPage("process_delete", "get", "manage_processes", 200, "process"),
    FolderPage("process_delete", "post", "manage_processes", 302, "process"),
    FolderPage("process_job_retry", "post", "manage_processes", 302, "job"),
    FolderPage("connection_triggers", "get", "view_triggers", 200, "connection"),
    FolderPage("trigger_add", "get", "manage_triggers", 200, "connection"),
    FolderPage("trigger_add", "post", "manage_triggers", 400, "connection"),
    FolderPage("trigger_detail", "get", "view_triggers", 200, "trigger"),
    FolderPage("trigger_edit", "get", "manage_triggers", 200, "trigger"),
    FolderPage("trigger_edit", "post", "manage_triggers", 400, "trigger", {"process": "0"}),
    FolderPage("trigger_set_enabled", "post", "manage_triggers", 302, "trigger"),
    FolderPage("trigger_poll_now", "post", "manage_triggers", 302, "trigger"),
    FolderPage("trigger_delete", "get", "manage_triggers", 200, "trigger"),
    FolderPage("trigger_delete", "post", "manage_triggers", 302, "trigger"),
    FolderPage("trigger_job_retry", "post", "manage_processes", 302, "trigger_job"),
    # Replay of an event: the same permission as Retry on that page.
    FolderPage("trigger_event_replay", "get", "manage_processes", 200, "trigger_event"),
    FolderPage("trigger_event_replay", "post", "manage_triggers", 302, "trigger_event"),
]


def _place(name, tree, other_user):
    return {
        "assigned": tree["finance"],
        "subfolder": tree["payables"],
        "unrelated": tree["hr"],
        "other_workspace": other_user.personal_workspace,
    }[name]


def _expected(role, place, governance_on):
    if role == TENANT_ADMIN:
        allowed = set(ROLE_ACTIONS[role]) if place != "other_workspace" else set()
    else:
        allowed = set(ROLE_ACTIONS[role]) if place in {"assigned", "subfolder"} else set()
    if not governance_on and "manage" not in allowed:
        allowed.discard("create")
    # Folder - Manage access on the folder's parent (renaming, moving or
    # deleting it): the role is given on Finance, the subfolder's parent; a
    # tenant administrator holds it on every shared folder.
    if "manage" in allowed and (role == TENANT_ADMIN or place == "subfolder"):
        allowed.add("manage_parent")
    return allowed


def _http_status(client, action, folder):
    """What the server answers for an action that has a page."""
    if action == "view_folder":
        return client.get(reverse("folder_subfolders", args=[folder.pk])).status_code
    if action == "view":
        return client.get(reverse("folder_connections", args=[folder.pk])).status_code
    if action == "create":
        return client.get(reverse("connection_add", args=[folder.pk])).status_code
    if action == "manage":
        return client.get(reverse("folder_access", args=[folder.pk])).status_code
    raise AssertionError(action)


def _flow(user, connection) -> OAuthFlow:
    """``user``'s sign-in to reconnect ``connection`` that came back as
    another account and waits for confirmation."""
    return OAuthFlow.objects.create(
        state=f"matrix-{connection.pk}-{user.pk}",
        user=user,
        session_binding="matrix",
        folder=connection.folder,
        connection=connection,
        connector_key=connection.connector_key,
        auth_type=connection.auth_type,
        own_app=connection.own_app,
        name=connection.name,
        client_id="matrix-app",
        redirect_uri="http://testserver/oauth/callback/",
        issuer="http://testserver/sandbox/oauth/",
        pending_identity="someone.else@example.com",
        expires_at=timezone.now() + timedelta(minutes=10),
    )


def _job(folder) -> Job:
    """A job of a process of ``folder``, from an event of a trigger on a
    Sandbox connection there, whose webhook delivery failed."""
    connection = ConnectionFactory(folder=folder, sandbox=True, name="Records", secret=SECRET)
    process = Process.objects.create(
        folder=folder, name="Matrix", job_queue=True, webhook_url="https://hooks.example.com/m"
    )
    trigger = Trigger.objects.create(
        connection=connection, event_key="record_created", process=process
    )
    event = TriggerEvent.objects.create(trigger=trigger, provider_id="1", summary="A record")
    return Job.objects.create(
        process=process,
        trigger=trigger,
        event=event,
        webhook_id="msg_matrix",
        delivery_state=Job.DeliveryState.FAILED,
    )


def _request(client, page: FolderPage, folder, user, make_user):
    """Ask for ``page`` in ``folder``; the response and the connection it acted on."""
    connection = None
    args = [folder.pk]
    if page.target in {"process", "job"}:
        job = _job(folder)
        args.append(job.process_id)
        if page.target == "job":
            args.append(job.pk)
    elif page.target in {"trigger", "trigger_job", "trigger_event"}:
        job = _job(folder)
        args += [job.trigger.connection_id, job.trigger_id]
        if page.target == "trigger_job":
            args.append(job.pk)
        elif page.target == "trigger_event":
            args.append(job.event_id)
    elif page.target == "connection":
        connection = ConnectionFactory(folder=folder, sandbox=True, name="Robot", secret=SECRET)
    elif page.target in {"own_app", "flow"}:
        connection = ConnectionFactory(
            folder=folder,
            sandbox=True,
            auth_type="oauth2_authorization_code",
            own_app=True,
            name="Own app",
            secret=OWN_APP_SECRET,
        )
    if page.url_name == "connection_add_auth":
        args.append("sandbox")
    elif page.url_name == "connection_add_details":
        args += ["sandbox", "pat"]
    elif page.target == "assignment":
        args.append(assign(make_user(), folder, "Viewer").pk)
    if page.target == "flow":
        args = [_flow(user, connection).pk]
    elif connection is not None:
        args.append(connection.pk)
    response = getattr(client, page.method)(reverse(page.url_name, args=args), page.data)
    return response, connection


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.mark.parametrize("governance_on", [True, False], ids=["governance-on", "governance-off"])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_role_matrix(client, tree, make_user, role, place, governance_on):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": governance_on}
    )
    other = make_user("someone-else")
    if role == TENANT_ADMIN:
        user = make_user("member", is_superuser=True, is_staff=True)
    else:
        user = make_user("member")
        if role:
            assign(user, tree["finance"], role)
    folder = _place(place, tree, other)
    held = _expected(role, place, governance_on)
    # Every role sees the folders it is given and below; a tenant
    # administrator every shared folder; nobody another's workspace.
    visible = bool(role) and place in {"assigned", "subfolder"}
    visible = visible or (role == TENANT_ADMIN and place != "other_workspace")
    client.force_login(user)

    problems = []
    for page in FOLDER_PAGES:
        response, connection = _request(client, page, folder, user, make_user)
        expected = (page.ok if page.needs in held else 403) if visible else 404
        row = f"{page.method.upper()} {page.url_name}"
        if response.status_code != expected:
            problems.append(f"{row}: {response.status_code} (expected {expected})")
        if connection is not None and expected in {403, 404}:
            # A refusal changes nothing.
            stored = Connection.objects.filter(pk=connection.pk).first()
            wanted = SECRET if page.target == "connection" else OWN_APP_SECRET
            if stored is None or vault.read_secret(stored) != wanted:
                problems.append(f"{row}: refused, but the connection changed")
        targets = {"process", "job", "trigger", "trigger_job", "trigger_event"}
        if page.target in targets and expected in {403, 404}:
            made = list(Job.objects.filter(process__folder=folder).select_related("trigger"))
            job = made[0] if len(made) == 1 else None  # a refused replay makes no job
            if (
                job is None
                or job.delivery_state != Job.DeliveryState.FAILED
                or not job.trigger.enabled
            ):
                problems.append(f"{row}: refused, but the process or its job changed")
        Process.objects.filter(folder=folder).delete()
        Connection.objects.filter(folder=folder).delete()
    assert not problems, "\n".join(problems)
    # Edit and delete are also asked of the permission module.
    for action in ("create", "edit", "delete", "manage"):
        assert can(user, ACTION_CODENAMES[action], folder) == (action in held), action


# --- Pages outside a folder -----------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A page of the tenant or of one's own account: one status for a tenant
    administrator, one for everyone else (whatever role they hold on a folder)."""

    url_name: str
    method: str
    tenant_admin: int
    member: int
    target: str = ""  # what the URL names; "another's ..." belongs to someone else
    # For a Folder Administrator (of any folder), when not what a member gets.
    folder_admin: int | None = None

    def expected(self, role: str | None) -> int:
        if role == TENANT_ADMIN:
            return self.tenant_admin
        if role == "Folder Administrator" and self.folder_admin is not None:
            return self.folder_admin
        return self.member


PAGES = [
    Page("home", "get", 302, 302),
    Page("help_troubleshooting", "get", 200, 200),
    Page("tenant_governance", "get", 200, 403),
    Page("tenant_folders", "get", 200, 403),
    Page("tenant_invitations", "get", 200, 403),
    Page("invitation_revoke", "post", 302, 403, "invitation"),
    Page("tenant_workspaces", "get", 200, 403),
    Page("tenant_robots", "get", 200, 403),
    Page("tenant_robot", "get", 200, 403, "robot"),
    Page("tenant_robot_key_revoke", "get", 200, 403, "robot key"),
    # Tenant administrators read every record, folder administrators their folders'.
    Page("audit_log", "get", 200, 403, folder_admin=200),
    Page("audit_log_csv", "get", 200, 403, folder_admin=200),
    Page("tenant_health", "get", 200, 403),
    Page("tenant_transfer", "get", 200, 403),
    # Download with no folder chosen: every shared folder's definitions.
    Page("tenant_transfer_export", "post", 200, 403),
    # No file: the form again, refused.
    Page("tenant_transfer_upload", "post", 400, 403),
    # Nothing uploaded yet: back to the Transfer tab.
    Page("tenant_transfer_plan", "get", 302, 403),
    Page("tenant_transfer_confirm", "post", 302, 403),
    Page("api_keys", "get", 200, 200),
    Page("api_key_revoke", "get", 200, 200, "own key"),
    Page("api_key_revoke", "get", 404, 404, "another's key"),
    # A signed-in person who follows an invitation is sent home.
    Page("invitation_accept", "get", 302, 302, "invitation token"),
    # Reached from the provider; without a state it is refused, signed in or not.
    Page("oauth_callback", "get", 400, 400),
    Page("oauth_flow_cancel", "post", 302, 302, "own flow"),
    Page("oauth_flow_cancel", "post", 404, 404, "another's flow"),
    Page("sandbox_tokens", "get", 200, 200),
    Page("sandbox_tokens", "post", 302, 302),
    Page("sandbox_token_revoke", "post", 302, 302, "own token"),
    Page("sandbox_token_revoke", "post", 404, 404, "another's token"),
    Page("sandbox_apps", "get", 200, 200),
    Page("sandbox_app_delete", "get", 200, 200, "own app"),
    Page("sandbox_app_delete", "get", 404, 404, "another's app"),
    # The Sandbox's resource API takes its own tokens; a session lends nothing.
    Page("sandbox_api_me", "get", 401, 401),
    Page("sandbox_api_records", "get", 401, 401),
]


def _args(target: str, user, stranger, tenant_admin, tree) -> list:
    owner = stranger if target.startswith("another's") else user
    if target == "invitation":
        return [Invitation.issue(email="new@example.com", invited_by=tenant_admin)[0].pk]
    if target == "invitation token":
        return [Invitation.issue(email="new@example.com", invited_by=tenant_admin)[1]]
    if target.startswith("robot"):
        robot = api_keys.create_robot(
            name=target.replace(" ", "-"), description="", actor=tenant_admin
        )
        if target == "robot":
            return [robot.pk]
        key = api_keys.issue(owner=robot.user, name="robot key", actor=tenant_admin).key
        return [robot.pk, key.pk]
    if target.endswith("key"):
        return [api_keys.issue(owner=owner, name="a key", actor=owner).key.pk]
    if target.endswith("flow"):
        connection = ConnectionFactory(folder=owner.personal_workspace, sandbox=True)
        return [_flow(owner, connection).pk]
    if target.endswith("token"):
        return [sandbox.issue_token(user=owner, name="a token")[0].pk]
    if target.endswith("app"):
        return [sandbox_provider.register_user_app(user=owner, name="An app").application.pk]
    assert not target, target
    return []


@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_pages_outside_a_folder(client, tree, make_user, tenant_admin, role):
    stranger = make_user("stranger")
    if role == TENANT_ADMIN:
        user = tenant_admin
    else:
        user = make_user("member")
        if role:
            assign(user, tree["finance"], role)
    problems = []
    for page in PAGES:
        args = _args(page.target, user, stranger, tenant_admin, tree)
        client.force_login(user)
        response = getattr(client, page.method)(reverse(page.url_name, args=args))
        expected = page.expected(role)
        if response.status_code != expected:
            row = f"{page.method.upper()} {page.url_name} {page.target}".strip()
            problems.append(f"{row}: {response.status_code} (expected {expected})")
    assert not problems, "\n".join(problems)


# --- Every URL name is a row --------------------------------------------------------

# Named URLs the matrices leave out, each with its reason (a route prefix, or
# a namespaced URL name).
NOT_IN_THE_MATRICES = {
    "admin/": "Django's admin: its own staff checks, tested in tests/connections/test_admin.py",
    "accounts/": "allauth's sign-in, sign-up and second-factor pages, for people not "
    "signed in yet: tests/portal/test_login_security.py and test_mfa.py",
    "sandbox/oauth/": "the Sandbox provider's own OAuth 2.0 server (django-oauth-toolkit), "
    "which plays the third party: tests/connections/test_oauth_flows.py",
    "healthz": "a probe: answers anyone, holds no data (test_run_environment.py)",
    "readyz": "a probe: answers anyone, holds no data (test_run_environment.py)",
    "api-v1:openapi-json": "the API's description, the same for everyone: test_openapi.py",
    "api-v1:openapi-view": "the API's documentation page, the same for everyone: test_openapi.py",
    "api-v1:api-root": "Ninja's root of the API, no operation of its own",
}


def _named_urls(resolver=None, prefix="", namespace=""):
    """(route, namespaced name) of every named URL, walking included URLconfs."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(n for n in (namespace, pattern.namespace or "") if n)
            yield from _named_urls(pattern, route, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield route.lstrip("^"), f"{namespace}:{pattern.name}" if namespace else pattern.name


def _excluded(route: str, name: str) -> str | None:
    for prefix_or_name in NOT_IN_THE_MATRICES:
        if name == prefix_or_name or (
            prefix_or_name.endswith("/") and route.startswith(prefix_or_name)
        ):
            return prefix_or_name
    return None


def test_every_url_name_is_a_row_of_a_matrix():
    covered = {page.url_name for page in FOLDER_PAGES + PAGES}
    covered |= {f"api-v1:{name}" for name in API_URL_NAMES}
    # The Solutions section's pages and API have their matrix of their own.
    covered |= solutions_matrix.URL_NAMES
    covered |= {f"api-v1:{name}" for name in solutions_matrix.API_URL_NAMES}
    covered |= deploy_matrix.URL_NAMES
    covered |= {f"api-v1:{name}" for name in deploy_matrix.API_URL_NAMES}
    uncovered, used = [], set()
    for route, name in _named_urls():
        exclusion = _excluded(route, name)
        if exclusion:
            used.add(exclusion)
        elif name not in covered:
            uncovered.append(f"{name} ({route})")
    assert not uncovered, "URL names no permission matrix covers:\n" + "\n".join(uncovered)
    # An exclusion that matches nothing any more goes.
    assert used == set(NOT_IN_THE_MATRICES), set(NOT_IN_THE_MATRICES) - used
    # A row for a URL name that is gone goes too.
    names = {name for _, name in _named_urls()}
    assert covered <= names, covered - names


def test_assignment_to_group_applies_to_members(client, tree, make_user):
    from tests.factories import GroupFactory

    group = GroupFactory()
    user = make_user("grouped")
    user.groups.add(group)
    assign(group, tree["finance"], "Automation Developer")
    client.force_login(user)
    assert client.get(reverse("connection_add", args=[tree["payables"].pk])).status_code == 200
    assert client.get(reverse("folder_connections", args=[tree["hr"].pk])).status_code == 404


@pytest.mark.parametrize("governance_on", [True, False])
def test_tenant_admin_everywhere_shared_but_not_inside_workspaces(
    client, tree, make_user, tenant_admin, governance_on
):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": governance_on}
    )
    other = make_user("alice")
    client.force_login(tenant_admin)
    for folder in (tree["shared"], tree["payables"], tree["other"]):
        for action in ("view_folder", "view", "create", "manage"):
            assert _http_status(client, action, folder) == 200, (folder, action)
    workspace = other.personal_workspace
    for action in ("view_folder", "view", "create"):
        assert _http_status(client, action, workspace) == 404
    # ... but lists that it exists.
    page = client.get(reverse("tenant_workspaces"))
    assert workspace.name in page.content.decode()


@pytest.mark.parametrize("governance_on", [True, False])
def test_owner_of_personal_workspace(client, make_user, governance_on):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": governance_on}
    )
    user = make_user("owner")
    workspace = user.personal_workspace
    client.force_login(user)
    for action in ("view_folder", "view", "create"):
        assert _http_status(client, action, workspace) == 200
    # A personal workspace is not shared: nobody manages access to it.
    assert _http_status(client, "manage", workspace) == 403
    for action in ("create", "edit", "delete"):
        assert can(user, ACTION_CODENAMES[action], workspace)


def test_tenant_admin_role_can_be_given(client, make_user):
    from django.contrib.auth.models import Permission

    user = make_user("delegate")
    client.force_login(user)
    assert client.get(reverse("tenant_governance")).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="administer_tenant"))
    assert client.get(reverse("tenant_governance")).status_code == 200


def test_only_tenant_admin_changes_governance(client, tree, make_user, tenant_admin):
    admin_of_folder = make_user("fa")
    assign(admin_of_folder, tree["shared"], "Folder Administrator")
    client.force_login(admin_of_folder)
    response = client.post(reverse("tenant_governance"), {})
    assert response.status_code == 403
    assert TenantSettings.load().allow_shared_connection_creation is True

    client.force_login(tenant_admin)
    response = client.post(reverse("tenant_governance"), {})  # unchecked box: off
    assert response.status_code == 302
    assert TenantSettings.load().allow_shared_connection_creation is False


def test_managing_access_is_server_side(client, tree, make_user):
    developer = make_user("dev")
    target = make_user("target")
    assign(developer, tree["finance"], "Automation Developer")
    client.force_login(developer)
    response = client.post(
        reverse("folder_access", args=[tree["finance"].pk]),
        {"user": "target", "role": 1},
    )
    assert response.status_code == 403
    assert not target.role_assignments.exists()


def test_folder_admin_gives_and_removes_roles(client, tree, make_user):
    from portal.models import Role

    fa = make_user("fa")
    target = make_user("target")
    assign(fa, tree["shared"], "Folder Administrator")
    client.force_login(fa)
    viewer = Role.objects.get(name="Viewer")
    response = client.post(
        reverse("folder_access", args=[tree["finance"].pk]),
        {"user": "target@example.com", "role": viewer.pk},
    )
    assert response.status_code == 302
    assert can(target, Action.VIEW_CONNECTIONS, tree["payables"])
    assert not can(target, Action.VIEW_CONNECTIONS, tree["hr"])

    assignment = target.role_assignments.get()
    confirm = client.get(reverse("assignment_remove", args=[tree["finance"].pk, assignment.pk]))
    assert confirm.status_code == 200
    assert "Remove role" in confirm.content.decode()
    client.post(reverse("assignment_remove", args=[tree["finance"].pk, assignment.pk]))
    assert not can(target, Action.VIEW_FOLDER, tree["finance"])


def test_assignment_form_rejects_bad_input_and_changes_nothing(client, tree, make_user):
    from portal.models import Role, RoleAssignment

    fa = make_user("fa")
    assign(fa, tree["finance"], "Folder Administrator")
    client.force_login(fa)
    viewer = Role.objects.get(name="Viewer")
    before = RoleAssignment.objects.count()
    url = reverse("folder_access", args=[tree["finance"].pk])
    response = client.post(url, {"user": "nobody-here", "role": viewer.pk})
    assert response.status_code == 400
    assert "No active user with the username or e-mail" in response.content.decode()
    response = client.post(url, {"user": "", "role": viewer.pk})
    assert "Choose either a user or a group" in response.content.decode()
    assert RoleAssignment.objects.count() == before


def test_inherited_assignment_cannot_be_removed_from_subfolder(client, tree, make_user):
    fa = make_user("fa")
    assign(fa, tree["shared"], "Folder Administrator")
    target = make_user("target")
    inherited = assign(target, tree["shared"], "Viewer")
    client.force_login(fa)
    url = reverse("assignment_remove", args=[tree["finance"].pk, inherited.pk])
    assert client.post(url).status_code == 404
    assert target.role_assignments.exists()


def test_role_edit_in_admin_updates_grants(tree, make_user):
    from portal.models import Role

    user = make_user("u")
    assign(user, tree["finance"], "Viewer")
    assert not can(user, Action.USE_CONNECTIONS, tree["finance"])
    viewer = Role.objects.get(name="Viewer")
    from django.contrib.auth.models import Permission

    viewer.permissions.add(Permission.objects.get(codename="use_connections"))
    assert can(user, Action.USE_CONNECTIONS, tree["finance"])
    viewer.permissions.remove(Permission.objects.get(codename="use_connections"))
    assert not can(user, Action.USE_CONNECTIONS, tree["finance"])


def test_two_roles_sharing_a_permission_survive_removal_of_one(tree, make_user):
    user = make_user("u")
    dev = assign(user, tree["finance"], "Automation Developer")
    assign(user, tree["finance"], "Viewer")
    dev.delete()
    assert can(user, Action.VIEW_CONNECTIONS, tree["finance"])
    assert not can(user, Action.CREATE_CONNECTIONS, tree["finance"])


def test_moving_a_folder_moves_inherited_access(tree, make_user):
    user = make_user("u")
    assign(user, tree["hr"], "Viewer")
    payables = tree["payables"]
    deeper = FolderFactory(name="Deeper", parent=payables)
    assert not can(user, Action.VIEW_FOLDER, payables)
    payables.parent = tree["hr"]
    payables.save()
    deeper.refresh_from_db()
    assert deeper.path == f"{tree['shared'].path}{tree['hr'].pk}/{payables.pk}/{deeper.pk}/"
    assert can(user, Action.VIEW_FOLDER, payables)
    assert can(user, Action.VIEW_FOLDER, deeper)
    assert not can(user, Action.VIEW_FOLDER, tree["finance"])


# Folder ids far above what the test database's sequences reach, so that a
# test can choose them; they share digits on purpose.
A, BELOW_A, LOOKALIKE, LOOKALIKE_CHILD = 9_000_007, 9_000_008, 19_000_007, 90_000_071


def _folder(pk: int, parent=None):
    from portal.models import Folder

    return Folder.objects.create(pk=pk, name=f"F{pk}", kind=Folder.Kind.SHARED, parent=parent)


@pytest.mark.parametrize("through", ["user", "group"])
def test_a_grant_applies_below_its_folder_and_nowhere_its_id_is_part_of_another(make_user, through):
    """A folder's path is the ids from the top ("/9000007/9000008/"): a grant
    on 9000007 holds there and below, not in 19000007 nor in 90000071, whose
    paths hold the digits but not the id. Asked as the pages ask, as lists
    ask (``folders_where``) and in the statement that reads a connection for
    use."""
    from connections.runtime import connection_for_use
    from portal.permissions import folder_permissions, folders_where
    from tests.connections.api.helpers import make_connection
    from tests.factories import GroupFactory

    granted = _folder(A)
    below = _folder(BELOW_A, granted)
    lookalike = _folder(LOOKALIKE)
    lookalike_child = _folder(LOOKALIKE_CHILD, lookalike)
    assert (below.path, lookalike_child.path) == ("/9000007/9000008/", "/19000007/90000071/")
    user = make_user("member")
    if through == "user":
        assign(user, granted, "Automation User")
    else:
        group = GroupFactory()
        user.groups.add(group)
        assign(group, granted, "Automation User")
    expected = {Action.VIEW_CONNECTIONS, Action.USE_CONNECTIONS}
    for place, holds in [(granted, True), (below, True), (lookalike, False),
                         (lookalike_child, False)]:  # fmt: skip
        got = folder_permissions(user, place)
        assert expected <= got if holds else not got, place.path
        listed = folders_where(user, Action.USE_CONNECTIONS).filter(pk=place.pk).exists()
        assert listed == holds, place.path
        _, read = connection_for_use(make_connection(place, f"In {place.pk}").pk, user)
        assert expected <= read if holds else not read, place.path


@pytest.mark.parametrize("seed", range(3))
def test_grants_on_a_random_tree_are_those_on_the_folder_and_its_ancestors(make_user, seed):
    """Random trees of folders whose ids share digits, roles given to a user
    directly and through two groups: on every folder, the grants the
    database answers (as the pages ask, as lists ask, and along a
    connection's read for use) are
    the roles' permissions given on a folder whose path starts its path,
    the rule written out here in Python."""
    import random

    from django.contrib.auth.models import Group

    from connections.runtime import connection_for_use
    from portal.models import Role
    from portal.permissions import _granted_codenames, folders_where
    from tests.connections.api.helpers import make_connection

    rng = random.Random(seed)
    # Ids with others that begin or end with them: 9001234, 90012347, 79001234.
    bases = rng.sample(range(9_000_000, 9_100_000), 8)
    pool = []
    for base in bases:
        pool += [base, base * 10 + rng.randint(0, 9), rng.randint(1, 9) * 10**7 + base]
    rng.shuffle(pool)
    folders = []
    for pk in pool:
        parent = rng.choice(folders) if folders and rng.random() < 0.7 else None
        folders.append(_folder(pk, parent))
    user = make_user("member")
    groups = [Group.objects.create(name=f"g{seed}-{n}") for n in range(2)]
    user.groups.add(*groups)
    roles = list(Role.objects.prefetch_related("permissions"))
    given = []
    for principal in [user, user, *groups, *groups]:
        folder, role = rng.choice(folders), rng.choice(roles)
        if not any(g[:3] == (principal, folder, role) for g in given):
            assign(principal, folder, role.name)
            given.append((principal, folder, role, {p.codename for p in role.permissions.all()}))
    for folder in folders:
        folder.refresh_from_db()
        expected = set().union(
            *(codenames for _, on, _, codenames in given if folder.path.startswith(on.path))
        )
        assert _granted_codenames(user, folder) == expected, folder.path
        listed = folders_where(user, Action.VIEW_CONNECTIONS).filter(pk=folder.pk).exists()
        assert listed == (Action.VIEW_CONNECTIONS in expected), folder.path
        connection = make_connection(folder, f"In {folder.pk}")
        assert connection_for_use(connection.pk, user)[1] == expected, folder.path
