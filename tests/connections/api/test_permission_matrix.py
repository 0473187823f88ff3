"""Every API endpoint x role x where the folder stands x the key's folder
scope, answered by the server: 404 when the folder or connection is
invisible (or outside the key's scope), 403 naming the missing permission
when visible, 2xx when allowed; a refusal changes nothing. Then the keys
that do not authenticate, and sessions, which never do.

The expected answers are written out from the built-in roles, not derived
from the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from connections import vault
from connections.models import (
    Connection,
    ConnectionState,
    HealthCheck,
    Job,
    Process,
    Trigger,
    TriggerEvent,
)
from connections.triggers import configure, processes
from connections.triggers.tasks import deliver_jobs_task, poll_now_task
from portal import api_keys
from portal.models import ApiKey, AuditRecord, TenantSettings
from portal.permissions import GOVERNANCE_CREATE_REFUSED
from tests.connections.api.conftest import ApiClient
from tests.connections.api.helpers import (
    API,
    ORIGINAL_TOKEN,
    body,
    expire,
    make_connection,
    refused_message,
    snapshot,
)
from tests.connections.fake_provider import GOOD_TOKEN
from tests.factories import assign

ROLES = {
    "Folder Administrator": {"view", "use", "create", "edit", "delete"},
    "Automation Developer": {"view", "use", "create", "edit", "delete"},
    "Automation User": {"view", "use"},
    "Viewer": {"view"},
    None: set(),
}
# Where the connection lives, relative to the role granted on Finance.
PLACES = {"granted": "finance", "subfolder": "payables", "unrelated": "hr"}
PATHS = {
    "finance": "Shared/Finance",
    "payables": "Shared/Finance/Payables",
    "hr": "Shared/HR",
}
# The key's folder scope: none, the granted folder, or the subfolder only.
SCOPES = {"unscoped": None, "scoped-granted": "finance", "scoped-subfolder": "payables"}
IN_SCOPE = {
    None: {"finance", "payables", "hr"},
    "finance": {"finance", "payables"},
    "payables": {"payables"},
}
NEW_NAME = "Made through the API"


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # {folder} and {connection} are filled in
    needs: str  # view, use, create, edit or delete
    ok: int = 200
    params: dict | None = None  # values may hold {folder}, {connection}, {path}
    body: dict | None = None
    setup: dict = field(default_factory=dict)  # how the connection acted on starts
    url_name: str = ""  # the operation's URL name, for the walk of the URLconf


ENDPOINTS = [
    Endpoint("list", "GET", "/folders/{folder}/connections", "view", url_name="list_connections"),
    Endpoint("get", "GET", "/connections/{connection}", "view", url_name="get_connection"),
    Endpoint(
        "resolve-id",
        "GET",
        "/connections/resolve",
        "view",
        params={"id": "{connection}"},
        url_name="resolve_connection",
    ),
    Endpoint(
        "resolve-path",
        "GET",
        "/connections/resolve",
        "view",
        params={"folder": "{path}", "connector": "fakehub", "name": "Robot"},
        url_name="resolve_connection",
    ),
    Endpoint(
        "resolve-folder-id",
        "GET",
        "/connections/resolve",
        "view",
        params={"folder_id": "{folder}", "connector": "fakehub"},
        url_name="resolve_connection",
    ),
    Endpoint(
        "credentials",
        "GET",
        "/connections/{connection}/credentials",
        "use",
        url_name="connection_credentials",
    ),
    Endpoint(
        "credentials-id",
        "GET",
        "/credentials",
        "use",
        params={"id": "{connection}"},
        url_name="named_credentials",
    ),
    Endpoint(
        "credentials-path",
        "GET",
        "/credentials",
        "use",
        params={"folder": "{path}", "connector": "fakehub", "name": "Robot"},
        url_name="named_credentials",
    ),
    Endpoint(
        "create",
        "POST",
        "/folders/{folder}/connections",
        "create",
        ok=201,
        body={
            "connector": "fakehub",
            "auth_type": "pat",
            "name": NEW_NAME,
            "secret": {"token": GOOD_TOKEN},
        },
        url_name="create_connection",
    ),
    Endpoint(
        "edit",
        "PATCH",
        "/connections/{connection}",
        "edit",
        body={"description": "Changed through the API"},
        url_name="edit_connection",
    ),
    Endpoint(
        "secret",
        "PUT",
        "/connections/{connection}/secret",
        "edit",
        body={"secret": {"token": GOOD_TOKEN}},
        url_name="replace_secret",
    ),
    Endpoint(
        "check", "POST", "/connections/{connection}/check", "use", url_name="check_connection"
    ),
    Endpoint(
        "disable",
        "POST",
        "/connections/{connection}/disable",
        "edit",
        url_name="disable_connection",
    ),
    Endpoint(
        "enable",
        "POST",
        "/connections/{connection}/enable",
        "edit",
        setup={"is_enabled": False},
        url_name="enable_connection",
    ),
    Endpoint(
        "delete",
        "DELETE",
        "/connections/{connection}",
        "delete",
        ok=204,
        url_name="delete_connection",
    ),
    Endpoint(
        "make-default", "PUT", "/connections/{connection}/default", "edit", url_name="make_default"
    ),
    Endpoint(
        "clear-default",
        "DELETE",
        "/connections/{connection}/default",
        "edit",
        setup={"is_default": True},
        url_name="clear_default",
    ),
]

# Every URL name of the API the matrix asks: its endpoints, and what test_matrix
# asks of every key first (who am I, which folders, the portal's settings).
API_URL_NAMES = {endpoint.url_name for endpoint in ENDPOINTS} | {
    "me",
    "list_folders",
    "portal_settings",
}


# What any valid key may ask, and nothing else may.
WHO_AND_WHERE = [
    Endpoint("me", "GET", "/me", "view", url_name="me"),
    Endpoint("settings", "GET", "/settings", "view", url_name="portal_settings"),
]


def _fill(value, values: dict):
    return value.format(**values) if isinstance(value, str) else value


def call(api, endpoint: Endpoint, folder, connection, path: str):
    values = {"folder": folder.pk, "connection": connection.pk, "path": path}
    params = {k: _fill(v, values) for k, v in (endpoint.params or {}).items()}
    return api.request(
        endpoint.method, API + endpoint.path.format(**values), params=params, body=endpoint.body
    )


def _effect(endpoint: Endpoint, connection: Connection, response, audits_before: int) -> str:
    """What an allowed call must have done; '' when it did."""
    name = endpoint.name
    if endpoint.ok == 204:
        return "" if not Connection.objects.filter(pk=connection.pk).exists() else "not deleted"
    answer = response.json()
    if name == "list":
        return "" if [i["id"] for i in answer["items"]] == [connection.pk] else f"items {answer}"
    if name.startswith(("get", "resolve")):
        return "" if answer["id"] == connection.pk else f"answered {answer['id']}"
    if name.startswith("credentials"):
        audits = AuditRecord.objects.filter(action=AuditRecord.Action.CREDENTIALS_READ).count()
        if answer["secret"] != {"token": ORIGINAL_TOKEN} or answer["connection_id"] != (
            connection.pk
        ):
            return "wrong credentials"
        return "" if audits == audits_before + 1 else "not audited"
    if name == "create":
        made = Connection.objects.filter(folder_id=connection.folder_id, name=NEW_NAME).first()
        if made is None or made.state != ConnectionState.CONNECTED or answer["id"] != made.pk:
            return "not created"
        return "" if vault.read_secret(made) == {"token": GOOD_TOKEN} else "secret not stored"
    connection.refresh_from_db()
    if name == "edit":
        return "" if connection.description == "Changed through the API" else "not edited"
    if name == "secret":
        stored = vault.read_secret(connection)
        return "" if stored == {"token": GOOD_TOKEN} and answer["ok"] else "secret not replaced"
    if name == "check":
        checked = HealthCheck.objects.filter(connection=connection).count() == 1
        # The stored secret is one the fake provider refuses.
        broken = connection.state == ConnectionState.NEEDS_RECONNECT and not answer["ok"]
        return "" if checked and broken else "not checked"
    if name in {"disable", "enable"}:
        return "" if connection.is_enabled == (name == "enable") else "not switched"
    if name in {"make-default", "clear-default"}:
        wanted = name == "make-default"
        return "" if connection.is_default == wanted == answer["is_default"] else "default"
    raise AssertionError(name)


def check_endpoints(api, folder, path: str, *, visible: bool, held: set[str]) -> list[str]:
    """Every endpoint on a fresh connection in ``folder``; the problems found."""
    problems = []
    for endpoint in ENDPOINTS:
        connection = make_connection(folder, **endpoint.setup)
        before = snapshot(folder)
        audits = before["audit"]
        response = call(api, endpoint, folder, connection, path)
        where = f"{endpoint.name}: {response.status_code} {response.content[:300]!r}"
        if not visible:
            expected, detail = 404, None
        elif endpoint.needs in held:
            expected, detail = endpoint.ok, None
        else:
            expected, detail = 403, refused_message(endpoint.needs)
        if response.status_code != expected:
            problems.append(f"{where} (expected {expected})")
        elif expected in {403, 404}:
            answer = body(response)
            if detail and answer["detail"] != detail:
                problems.append(f"{where} (expected the message {detail!r})")
            named_by_id = "name" not in (endpoint.params or {})
            if named_by_id and "Robot" in answer["detail"]:
                problems.append(f"{where} (names the connection it refused)")
            if snapshot(folder) != before:
                problems.append(f"{endpoint.name}: refused, but something changed")
        else:
            problem = _effect(endpoint, connection, response, audits)
            if problem:
                problems.append(f"{where}: {problem}")
        Connection.objects.filter(folder=folder).delete()
    return problems


@pytest.fixture(autouse=True)
def _governance_on(db):
    TenantSettings.objects.update_or_create(
        pk=1, defaults={"allow_shared_connection_creation": True}
    )


def _key(user, scope, *, name="matrix key"):
    """A key of ``user`` limited to ``scope``. Set on the row directly: a key
    outlives a role taken away after it was made, so its scope may be a
    folder its user no longer sees."""
    client = ApiClient(api_keys.issue(owner=user, name=name, actor=user).raw)
    ApiKey.objects.filter(user=user, name=name).update(folder=scope)
    return client


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("role", list(ROLES), ids=lambda r: r or "no-role")
def test_matrix(tree, make_user, fakehub, role, place, scope):
    user = make_user("member")
    if role:
        assign(user, tree["finance"], role)
    where = PLACES[place]
    folder = tree[where]
    scope_name = SCOPES[scope]
    api = _key(user, tree[scope_name] if scope_name else None)
    in_scope = where in IN_SCOPE[scope_name]
    visible = bool(role) and place in {"granted", "subfolder"} and in_scope

    assert api.get(f"{API}/me").status_code == 200
    assert api.get(f"{API}/settings").json()["read_only"] is False  # any valid key
    listed = {item["id"] for item in api.get(f"{API}/folders", {"page_size": 200}).json()["items"]}
    assert (folder.pk in listed) == visible, listed

    problems = check_endpoints(api, folder, PATHS[where], visible=visible, held=ROLES[role])
    assert not problems, "\n".join(problems)


def test_tenant_admin_everywhere_shared_never_in_a_workspace(
    tree, tenant_admin, make_user, fakehub
):
    owner = make_user("owner")
    api = _key(tenant_admin, None)
    everything = set(ROLES["Folder Administrator"])
    for where in ("finance", "payables", "hr"):
        problems = check_endpoints(api, tree[where], PATHS[where], visible=True, held=everything)
        assert not problems, "\n".join(problems)
    problems = check_endpoints(api, owner.personal_workspace, "~", visible=False, held=set())
    assert not problems, "\n".join(problems)
    # Limited to HR, the tenant administrator's key acts nowhere else.
    hr_only = _key(tenant_admin, tree["hr"], name="hr only")
    finance = tree["finance"]
    problems = check_endpoints(hr_only, finance, PATHS["finance"], visible=False, held=set())
    assert not problems, "\n".join(problems)


def test_personal_workspace_is_its_owners_alone(tree, make_user, fakehub):
    owner = make_user("owner")
    other = make_user("other")
    workspace = owner.personal_workspace
    everything = set(ROLES["Automation Developer"])
    problems = check_endpoints(_key(owner, None), workspace, "~", visible=True, held=everything)
    assert not problems, "\n".join(problems)
    mine = _key(owner, workspace, name="workspace only")
    problems = check_endpoints(mine, workspace, "~", visible=True, held=everything)
    assert not problems, "\n".join(problems)
    # Another user ("~" is their own workspace, where nothing is named Robot).
    problems = check_endpoints(_key(other, None), workspace, "~", visible=False, held=set())
    assert not problems, "\n".join(problems)
    # The owner's key limited to a shared folder does not reach the workspace.
    assign(owner, tree["finance"], "Viewer")
    finance_only = _key(owner, tree["finance"], name="finance only")
    problems = check_endpoints(finance_only, workspace, "~", visible=False, held=set())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("role", "status"), [("Automation Developer", 403), ("Folder Administrator", 201)]
)
def test_create_with_governance_off(tree, make_user, fakehub, role, status):
    TenantSettings.objects.filter(pk=1).update(allow_shared_connection_creation=False)
    user = make_user("member")
    assign(user, tree["finance"], role)
    api = _key(user, None)
    create = next(e for e in ENDPOINTS if e.name == "create")
    response = api.post(f"{API}/folders/{tree['finance'].pk}/connections", create.body)
    assert response.status_code == status, response.content
    if status == 403:
        # The reason is the tenant's governance setting, not the role.
        assert body(response)["detail"] == GOVERNANCE_CREATE_REFUSED
    assert Connection.objects.filter(name=NEW_NAME).exists() == (status == 201)
    # Everyone still creates in their own workspace.
    response = api.post(f"{API}/folders/{user.personal_workspace.pk}/connections", create.body)
    assert response.status_code == 201, response.content


def test_invisible_and_missing_answer_alike(tree, make_user, fakehub):
    user = make_user("member")
    assign(user, tree["finance"], "Folder Administrator")
    api = _key(user, None)
    hidden = make_connection(tree["hr"])
    missing_id = hidden.pk + 1000
    for suffix in ("", "/credentials"):
        invisible = api.get(f"{API}/connections/{hidden.pk}{suffix}")
        missing = api.get(f"{API}/connections/{missing_id}{suffix}")
        assert invisible.status_code == missing.status_code == 404
        assert invisible.json() == missing.json()
    invisible = api.get(f"{API}/folders/{tree['hr'].pk}/connections")
    missing = api.get(f"{API}/folders/{tree['hr'].pk + 1000}/connections")
    assert invisible.status_code == missing.status_code == 404
    assert invisible.json() == missing.json()


# --- Keys that do not authenticate, and sessions --------------------------


def _refused_key(kind: str, user) -> tuple[ApiClient, str]:
    """A client whose key does not authenticate, and what the 401 says."""
    if kind == "missing":
        return ApiClient(None), "Send an API key"
    if kind == "not-bearer":
        client = ApiClient(None)
        client.headers = {"Authorization": "Basic dXNlcjpwYXNz"}
        return client, "Send an API key"
    if kind == "not-a-key":
        return ApiClient("not-a-key-at-all"), "Send an API key"
    if kind == "bearer-only":
        client = ApiClient(None)
        client.headers = {"Authorization": "Bearer"}
        return client, "Send an API key"
    if kind == "unknown":
        return ApiClient("cpk_" + "x" * 43), "not valid"
    issued = api_keys.issue(owner=user, name=kind, actor=user)
    if kind == "expired":
        expire(issued.key)
        return ApiClient(issued.raw), "expired"
    if kind == "revoked":
        api_keys.revoke(issued.key, actor=user)
        return ApiClient(issued.raw), "revoked"
    if kind == "deactivated":
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        return ApiClient(issued.raw), "deactivated"
    raise AssertionError(kind)


REFUSED_KEYS = [
    "missing",
    "not-bearer",
    "not-a-key",
    "bearer-only",
    "unknown",
    "expired",
    "revoked",
    "deactivated",
]


@pytest.mark.parametrize("kind", REFUSED_KEYS)
def test_keys_that_do_not_authenticate(tree, make_user, fakehub, kind):
    user = make_user("member")
    assign(user, tree["finance"], "Folder Administrator")
    api, says = _refused_key(kind, user)
    folder = tree["finance"]
    for endpoint in [*WHO_AND_WHERE, *ENDPOINTS]:
        connection = make_connection(folder, **endpoint.setup)
        before = snapshot(folder)
        response = call(api, endpoint, folder, connection, PATHS["finance"])
        assert response.status_code == 401, (endpoint.name, response.content)
        assert says in body(response)["detail"], (endpoint.name, response.content)
        assert response["WWW-Authenticate"].startswith("Bearer"), endpoint.name
        assert snapshot(folder) == before, endpoint.name
        Connection.objects.filter(folder=folder).delete()


def test_a_signed_in_browser_without_a_key_gets_401(tree, make_user, fakehub):
    user = make_user("member")
    assign(user, tree["finance"], "Folder Administrator")
    browser = ApiClient(None)
    browser.client = Client(enforce_csrf_checks=True)
    browser.client.force_login(user)
    assert browser.client.get(f"/folders/{tree['finance'].pk}/connections/").status_code == 200
    folder = tree["finance"]
    for endpoint in [*WHO_AND_WHERE, *ENDPOINTS]:
        connection = make_connection(folder, **endpoint.setup)
        before = snapshot(folder)
        response = call(browser, endpoint, folder, connection, PATHS["finance"])
        assert response.status_code == 401, (endpoint.name, response.content)
        assert snapshot(folder) == before, endpoint.name
        Connection.objects.filter(folder=folder).delete()


def test_the_key_decides_not_the_session(tree, make_user, tenant_admin, fakehub):
    """A session of a tenant administrator lends nothing to a Viewer's key."""
    viewer = make_user("viewer")
    assign(viewer, tree["finance"], "Viewer")
    api = _key(viewer, None)
    api.client.force_login(tenant_admin)
    connection = make_connection(tree["finance"])
    me = api.get(f"{API}/me").json()
    assert me["user"] == "viewer"
    refused = api.get(f"{API}/connections/{connection.pk}/credentials")
    assert refused.status_code == 403
    assert refused.json()["detail"] == refused_message("use")
    assert api.get(f"{API}/connections/{make_connection(tree['hr'], 'HR').pk}").status_code == 404


@pytest.mark.parametrize(
    "path",
    [f"/connections/{2**64}", f"/connections/{2**64}/credentials", f"/credentials?id={2**64}"],
)
def test_an_id_beyond_any_database_integer_is_missing(tree, make_user, fakehub, path):
    user = make_user("member")
    assign(user, tree["finance"], "Folder Administrator")
    response = _key(user, None).get(f"{API}{path}")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such connection."}


# --- Processes, triggers, their events and jobs -------------------------------

# The built-in roles' grants on Finance, written out (portal/roles.py).
TRIGGER_ROLES = {
    "Folder Administrator": {
        "view_connections", "use_connections", "view_triggers", "manage_triggers",
        "view_processes", "manage_processes", "view_jobs",
    },
    "Automation Developer": {
        "view_connections", "use_connections", "view_triggers", "manage_triggers",
        "view_processes", "manage_processes", "view_jobs",
    },
    "Automation User": {"view_connections", "use_connections", "view_jobs"},
    "Viewer": {"view_connections", "view_triggers", "view_processes", "view_jobs"},
    None: set(),
}  # fmt: skip
TRIGGER_LABELS = {
    "use_connections": "Connections - Use",
    "view_triggers": "Triggers - View",
    "manage_triggers": "Triggers - Manage",
    "view_processes": "Processes - View",
    "manage_processes": "Processes - Manage",
    "view_jobs": "Jobs - View",
}
LEASE_TOKEN = "matrix-lease-token"
# The claimed job's lease ends in 5 minutes; an extension makes it 20.
EXTENDED_LEASE_SECONDS = 1200


@dataclass(frozen=True)
class TriggerEndpoint:
    name: str
    method: str
    path: str  # {folder}, {connection}, {process}, {trigger}, {job} are filled in
    needs: tuple[str, ...]  # asked in this order: a 403 names the first one missing
    url_name: str
    ok: int = 200
    body: dict | None = None  # "{process}" as a value becomes the process's id


TRIGGER_ENDPOINTS = [
    TriggerEndpoint(
        "processes", "GET", "/folders/{folder}/processes", ("view_processes",), "list_processes"
    ),
    TriggerEndpoint(
        "create-process",
        "POST",
        "/folders/{folder}/processes",
        ("manage_processes",),
        "create_process_in_folder",
        ok=201,
        body={"name": "Made through the API", "job_queue": True},
    ),
    TriggerEndpoint("process", "GET", "/processes/{process}", ("view_processes",), "get_process"),
    TriggerEndpoint(
        "triggers", "GET", "/connections/{connection}/triggers", ("view_triggers",), "list_triggers"
    ),
    TriggerEndpoint(
        "create-trigger",
        "POST",
        "/connections/{connection}/triggers",
        ("manage_triggers",),
        "create_trigger",
        ok=201,
        body={"event": "record_created", "process_id": "{process}"},
    ),
    TriggerEndpoint("trigger", "GET", "/triggers/{trigger}", ("view_triggers",), "get_trigger"),
    TriggerEndpoint(
        "disable-trigger",
        "POST",
        "/triggers/{trigger}/disable",
        ("manage_triggers",),
        "disable_trigger",
    ),
    TriggerEndpoint(
        "enable-trigger",
        "POST",
        "/triggers/{trigger}/enable",
        ("manage_triggers",),
        "enable_trigger",
    ),
    TriggerEndpoint(
        "delete-trigger",
        "DELETE",
        "/triggers/{trigger}",
        ("manage_triggers",),
        "delete_trigger",
        ok=204,
    ),
    TriggerEndpoint(
        "poll", "POST", "/triggers/{trigger}/poll", ("manage_triggers",), "poll_trigger_now", ok=202
    ),
    TriggerEndpoint(
        "events", "GET", "/triggers/{trigger}/events", ("view_triggers",), "list_trigger_events"
    ),
    TriggerEndpoint(
        "jobs", "GET", "/processes/{process}/jobs", ("view_jobs",), "list_pending_jobs"
    ),
    TriggerEndpoint(
        "claim",
        "POST",
        "/processes/{process}/jobs/claim",
        ("view_jobs", "use_connections"),
        "claim_job",
    ),
    TriggerEndpoint(
        "complete",
        "POST",
        "/jobs/{job}/complete",
        ("view_jobs", "use_connections"),
        "complete_job",
        body={"lease_token": LEASE_TOKEN},
    ),
    TriggerEndpoint(
        "fail",
        "POST",
        "/jobs/{job}/fail",
        ("view_jobs", "use_connections"),
        "fail_job",
        body={"lease_token": LEASE_TOKEN, "reason": "Refused by the ledger."},
    ),
    TriggerEndpoint(
        "extend",
        "POST",
        "/jobs/{job}/extend",
        ("view_jobs", "use_connections"),
        "extend_job_lease",
        body={"lease_token": LEASE_TOKEN, "lease_seconds": EXTENDED_LEASE_SECONDS},
    ),
    TriggerEndpoint(
        "retry-delivery",
        "POST",
        "/jobs/{job}/retry-delivery",
        ("manage_processes",),
        "retry_job_delivery",
    ),
    TriggerEndpoint(
        "replay", "POST", "/jobs/{job}/replay", ("manage_processes",), "replay_job_event", ok=201
    ),
    TriggerEndpoint(
        "edit-process",
        "PATCH",
        "/processes/{process}",
        ("manage_processes",),
        "edit_process_by_id",
        body={"description": "Changed through the API"},
    ),
]
API_URL_NAMES |= {endpoint.url_name for endpoint in TRIGGER_ENDPOINTS}


def _trigger_world(folder) -> dict:
    """In ``folder``: a Sandbox connection, a process (webhook and job queue)
    with a trigger on it, a pending job and a claimed one whose delivery
    failed."""
    connection = make_connection(folder, "Records", connector="sandbox")
    process = processes.create_process(
        folder=folder, name="Book", webhook_url="https://hooks.example.com/b", job_queue=True
    ).process
    trigger = configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )
    made = []
    for provider_id in ("pending", "claimed"):
        event = TriggerEvent.objects.create(trigger=trigger, provider_id=provider_id)
        made.append(Job.objects.create(process=process, trigger=trigger, event=event))
    Job.objects.filter(pk=made[1].pk).update(
        state=Job.State.CLAIMED,
        lease_owner=LEASE_TOKEN,
        lease_until=timezone.now() + timedelta(minutes=5),
        webhook_id="msg_matrix",
        delivery_state=Job.DeliveryState.FAILED,
    )
    return {"connection": connection, "process": process, "trigger": trigger, "job": made[1]}


def _trigger_snapshot(folder) -> dict:
    return {
        "processes": list(Process.objects.filter(folder=folder).order_by("pk").values()),
        "triggers": [
            {k: v for k, v in row.items() if k != "updated_at"}
            for row in Trigger.objects.filter(connection__folder=folder).order_by("pk").values()
        ],
        "jobs": list(Job.objects.filter(process__folder=folder).order_by("pk").values()),
    }


def _trigger_effect(endpoint: TriggerEndpoint, world: dict, response) -> str:
    """What an allowed call must have done; '' when it did."""
    name, trigger, job = endpoint.name, world["trigger"], world["job"]
    if endpoint.ok == 204:
        return "" if not Trigger.objects.filter(pk=trigger.pk).exists() else "not deleted"
    answer = response.json()
    if name in {"processes", "triggers", "events", "jobs"}:
        return "" if answer["count"] >= 1 else f"nothing listed: {answer}"
    if name == "create-process":
        return "" if Process.objects.filter(pk=answer["id"]).exists() else "not created"
    if name == "create-trigger":
        return "" if Trigger.objects.filter(pk=answer["id"]).exists() else "not created"
    if name in {"process", "trigger"}:
        wanted = world[name].pk
        return "" if answer["id"] == wanted else f"answered {answer['id']}"
    if name == "poll":
        return "" if answer["trigger_id"] == trigger.pk else "not queued"
    if name == "replay":
        made = Job.objects.filter(pk=answer["id"], replay_of=job).exists()
        return "" if made and answer["replay_of"] == job.pk else f"not replayed: {answer}"
    if name == "edit-process":
        world["process"].refresh_from_db()
        changed = world["process"].description == "Changed through the API"
        return "" if changed else "not edited"
    trigger.refresh_from_db()
    job.refresh_from_db()
    if name in {"disable-trigger", "enable-trigger"}:
        return "" if trigger.enabled == (name == "enable-trigger") else "not switched"
    if name == "claim":
        return "" if answer["event"]["provider_id"] == "pending" else "claimed the wrong job"
    if name in {"complete", "fail"}:
        wanted = Job.State.COMPLETED if name == "complete" else Job.State.FAILED
        return "" if job.state == wanted else f"job {job.state}"
    if name == "extend":
        if "lease_token" in answer or job.lease_owner != LEASE_TOKEN:
            return f"lease token shown or job lost: {answer}"
        moved = job.lease_until > timezone.now() + timedelta(seconds=EXTENDED_LEASE_SECONDS - 60)
        return "" if moved and job.state == Job.State.CLAIMED else f"not extended: {answer}"
    if name == "retry-delivery":
        return "" if job.delivery_state == Job.DeliveryState.RETRYING else "not retried"
    raise AssertionError(name)


def check_trigger_endpoints(api, folder, *, visible: bool, held: set[str]) -> list[str]:
    problems = []
    for endpoint in TRIGGER_ENDPOINTS:
        world = _trigger_world(folder)
        values = {
            "folder": folder.pk,
            **{key: world[key].pk for key in ("connection", "process", "trigger", "job")},
        }
        sent = {
            key: values["process"] if value == "{process}" else value
            for key, value in (endpoint.body or {}).items()
        }
        before = _trigger_snapshot(folder)
        response = api.request(endpoint.method, API + endpoint.path.format(**values), body=sent)
        where = f"{endpoint.name}: {response.status_code} {response.content[:300]!r}"
        missing = [needed for needed in endpoint.needs if needed not in held]
        if not visible:
            expected, detail = 404, None
        elif missing:
            expected = 403
            detail = f"You do not have {TRIGGER_LABELS[missing[0]]} in this folder."
        else:
            expected, detail = endpoint.ok, None
        if response.status_code != expected:
            problems.append(f"{where} (expected {expected})")
        elif expected in {403, 404}:
            answer = body(response)
            if detail and answer["detail"] != detail:
                problems.append(f"{where} (expected the message {detail!r})")
            if any(name in answer["detail"] for name in ("Records", "Book")):
                problems.append(f"{where} (names what it refused)")
            if _trigger_snapshot(folder) != before:
                problems.append(f"{endpoint.name}: refused, but something changed")
        else:
            problem = _trigger_effect(endpoint, world, response)
            if problem:
                problems.append(f"{where}: {problem}")
        Process.objects.filter(folder=folder).delete()
        Connection.objects.filter(folder=folder).delete()
    return problems


@pytest.fixture
def _no_tasks_sent(settings, monkeypatch):
    """The Sandbox connector; polls and deliveries asked for are not sent."""
    settings.PORTAL_SANDBOX_ENABLED = True
    monkeypatch.setattr(poll_now_task, "delay", lambda *args, **kwargs: None)
    monkeypatch.setattr(deliver_jobs_task, "delay", lambda *args, **kwargs: None)


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("role", list(TRIGGER_ROLES), ids=lambda r: r or "no-role")
def test_trigger_matrix(tree, make_user, _no_tasks_sent, role, place, scope):
    user = make_user("member")
    if role:
        assign(user, tree["finance"], role)
    folder = tree[PLACES[place]]
    scope_name = SCOPES[scope]
    api = _key(user, tree[scope_name] if scope_name else None)
    visible = (
        bool(role) and place in {"granted", "subfolder"} and (PLACES[place] in IN_SCOPE[scope_name])
    )
    problems = check_trigger_endpoints(api, folder, visible=visible, held=TRIGGER_ROLES[role])
    assert not problems, "\n".join(problems)


def test_trigger_endpoints_tenant_admin_and_workspaces(
    tree, tenant_admin, make_user, _no_tasks_sent
):
    everything = set(TRIGGER_ROLES["Folder Administrator"])
    admin = _key(tenant_admin, None)
    problems = check_trigger_endpoints(admin, tree["hr"], visible=True, held=everything)
    owner = make_user("owner")
    workspace = owner.personal_workspace
    problems += check_trigger_endpoints(admin, workspace, visible=False, held=set())
    problems += check_trigger_endpoints(
        _key(owner, None, name="own"), workspace, visible=True, held=everything
    )
    problems += check_trigger_endpoints(
        _key(make_user("other"), None, name="other"), workspace, visible=False, held=set()
    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", ["missing", "unknown", "revoked"])
def test_trigger_endpoints_refuse_keys_that_do_not_authenticate(
    tree, make_user, _no_tasks_sent, kind
):
    user = make_user("member")
    assign(user, tree["finance"], "Folder Administrator")
    api, says = _refused_key(kind, user)
    folder = tree["finance"]
    world = _trigger_world(folder)
    values = {"folder": folder.pk, **{key: world[key].pk for key in world}}
    before = _trigger_snapshot(folder)
    for endpoint in TRIGGER_ENDPOINTS:
        response = api.request(
            endpoint.method, API + endpoint.path.format(**values), body=endpoint.body
        )
        assert response.status_code == 401, (endpoint.name, response.content)
        assert says in body(response)["detail"], endpoint.name
    assert _trigger_snapshot(folder) == before
