"""The deployment pages and API x every role x where the deployment's folder
stands: one exact status per row. A deployment is seen with Solutions - View
(or Deploy) in its folder (404 without) and upgraded, edited or removed with
Solutions - Deploy there (403 without); a version is deployed from a solution
seen with Solutions - View in its source folder, into a folder where the
deployer holds Solutions - Deploy (the preflight refuses the rest). The URL
names here are rows of the portal's walk (tests/portal/test_permission_matrix.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from django.urls import reverse

from portal import api_keys
from solutions.deploy import actions, engine
from solutions.models import Deployment, Solution
from tests.connections.api.conftest import ApiClient
from tests.factories import assign
from tests.solutions.deploy_helpers import CONNECTION, manifest, picture, settings_doc, version_of

pytestmark = pytest.mark.django_db

TENANT_ADMIN = "Tenant administrator"
ROLE_ACTIONS = {
    "Folder Administrator": {"view", "deploy"},
    "Automation Developer": {"view"},
    "Automation User": set(),
    "Viewer": {"view"},
    TENANT_ADMIN: {"view", "deploy"},
    None: set(),
}
PLACES = {
    "assigned": "Shared/Finance",
    "subfolder": "Shared/Finance/Payables",
    "unrelated": "Shared/HR",
}


@dataclass(frozen=True)
class DeploymentPage:
    url_name: str
    method: str
    needs: str  # view or deploy
    ok: int
    target: str = "deployment"  # deployment, version (a solution's), solution
    data: dict = field(default_factory=dict)


DEPLOYMENT_PAGES = [
    DeploymentPage("solution_version_deploy", "get", "view", 200, "version"),
    # Nothing filled in: the form again, nothing written.
    DeploymentPage("solution_version_deploy", "post", "view", 400, "version"),
    DeploymentPage("solution_deployments", "get", "view", 200, "solution"),
    DeploymentPage("deployment_detail", "get", "view", 200),
    DeploymentPage("deployment_edit", "get", "deploy", 200),
    DeploymentPage("deployment_edit", "post", "deploy", 400, data={f"{CONNECTION}__name": ""}),
    DeploymentPage("deployment_upgrade", "get", "deploy", 200),
    DeploymentPage("deployment_upgrade", "post", "deploy", 400, data={"version": "2"}),
    DeploymentPage("deployment_remove", "get", "deploy", 200),
    DeploymentPage("deployment_remove", "post", "deploy", 302),
]
URL_NAMES = {page.url_name for page in DEPLOYMENT_PAGES}
API_URL_NAMES = {
    "preflight_deployment",
    "deploy_version",
    "get_deployment",
    "list_deployments",
    "preflight_upgrade",
    "upgrade_deployment",
    "edit_deployment_configuration",
    "remove_deployment",
}


def _user(role, make_user, tree):
    if role == TENANT_ADMIN:
        return make_user("member", is_superuser=True, is_staff=True)
    user = make_user("member")
    if role:
        assign(user, tree["finance"], role)
    return user


def _deployed(path: str, tree, root) -> Deployment:
    """Version 1 deployed into ``path`` (by a tenant administrator), its
    solution kept in the same folder; version 2 published."""
    solution = Solution.objects.create(name="Matrix", source_folder=_folder(path, tree))
    version = version_of(manifest(), solution=solution)
    version_of(manifest(), number=2, solution=solution)
    deployment = actions.deploy(version=version, settings=settings_doc(path), actor=root)
    assert engine.run(deployment.pk) == Deployment.State.SUCCEEDED
    deployment.refresh_from_db()
    return deployment


def _folder(path, tree):
    return {
        "Shared/Finance": tree["finance"],
        "Shared/Finance/Payables": tree["payables"],
        "Shared/HR": tree["hr"],
    }[path]


def _expected(role, place, needs, ok):
    seen = place in {"assigned", "subfolder"} or role == TENANT_ADMIN
    held = ROLE_ACTIONS[role] if seen else set()
    if not held & {"view", "deploy"}:
        return 404
    return ok if needs in held else 403


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_deployment_pages(client, tree, make_user, settings, role, place, tenant_admin):
    settings.PORTAL_SANDBOX_ENABLED = True
    user = _user(role, make_user, tree)
    client.force_login(user)
    problems = []
    for page in DEPLOYMENT_PAGES:
        deployment = _deployed(PLACES[place], tree, tenant_admin)
        args = {
            "deployment": [deployment.pk],
            "version": [deployment.solution_id, 1],
            "solution": [deployment.solution_id],
        }[page.target]
        before = picture()
        with_state = Deployment.objects.values_list("state", "version_id").get()
        response = getattr(client, page.method)(reverse(page.url_name, args=args), page.data)
        expected = _expected(role, place, page.needs, page.ok)
        if response.status_code != expected:
            row = f"{page.method.upper()} {page.url_name}"
            problems.append(f"{row}: {response.status_code} (expected {expected})")
        if expected in {403, 404, 400} and (
            picture() != before
            or Deployment.objects.values_list("state", "version_id").get() != with_state
        ):
            problems.append(f"{page.method.upper()} {page.url_name}: refused, but it changed")
        Deployment.objects.all().delete()
        Solution.objects.all().delete()
        _clean(tree)
    assert not problems, "\n".join(problems)


def _clean(tree):
    from connections.models import Connection, Process

    Process.objects.all().delete()
    Connection.objects.all().delete()


DEPLOY_INTO_NEW_FOLDER = {
    "Folder Administrator": 302,
    "Automation Developer": 400,  # the preflight: no Solutions - Deploy there
    "Automation User": 404,
    "Viewer": 400,
    TENANT_ADMIN: 302,
    None: 404,
}


@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_deploying_into_a_folder_needs_solutions_deploy_there(
    client, tree, make_user, settings, role, django_capture_on_commit_callbacks
):
    """Deploy is refused (400, the preflight naming the permission) into a
    folder where the deployer lacks Solutions - Deploy, and nothing is written."""
    settings.PORTAL_SANDBOX_ENABLED = True
    client.force_login(_user(role, make_user, tree))
    solution = Solution.objects.create(name="Matrix", source_folder=tree["finance"])
    version_of(manifest(), solution=solution)
    before = picture()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("solution_version_deploy", args=[solution.pk, 1]),
            {"folder": "Shared/Finance/New", "step": "deploy", **FORM},
        )
    assert response.status_code == DEPLOY_INTO_NEW_FOLDER[role]
    if response.status_code == 400:
        assert "You do not have Solutions - Deploy in Shared/Finance" in response.content.decode()
    if response.status_code != 302:
        assert picture() == before
        assert not Deployment.objects.exists()
    else:
        assert Deployment.objects.get().folder_path == "Shared/Finance/New"


FORM = {
    f"{CONNECTION}__auth": "authenticate_after",
    f"{CONNECTION}__name": "Records",
    "process-1__name": "Book",
    "process-1__job_queue": "on",
    "trigger-1__enabled": "on",
}


_keys = itertools.count()


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_deployment_api(tree, make_user, settings, role, place, tenant_admin):
    settings.PORTAL_SANDBOX_ENABLED = True
    user = _user(role, make_user, tree)
    api = ApiClient(api_keys.issue(owner=user, name=f"k{next(_keys)}", actor=user).raw)
    path = PLACES[place]
    rows = [
        ("get", "/deployments/{d}", None, "view", 200),
        ("get", "/solutions/{s}/deployments", None, "view", 200),
        ("post", "/solutions/{s}/versions/1/preflight", {"folder": path + "/New"}, "view", 200),
        ("post", "/deployments/{d}/upgrade/preflight?version=2", {}, "deploy", 200),
        ("post", "/deployments/{d}/upgrade?version=2", {}, "deploy", 202),
        ("patch", "/deployments/{d}/configuration", {}, "deploy", 202),
        ("delete", "/deployments/{d}", None, "deploy", 202),
        # Deploying needs Solutions - Deploy where the folder is (or would be) made.
        ("post", "/solutions/{s}/versions/1/deployments", {"folder": path + "/New"}, "deploy", 202),
    ]
    problems = []
    for method, url, data, needs, ok in rows:
        deployment = _deployed(path, tree, tenant_admin)
        url = url.format(d=deployment.pk, s=deployment.solution_id)
        before = picture()
        with_state = list(Deployment.objects.values_list("state", "version_id"))
        response = api.request(method, f"/api/v1{url}", body=data)
        expected = _expected(role, place, needs, ok)
        if response.status_code != expected:
            problems.append(f"{method.upper()} {url}: {response.status_code} ({expected})")
        if expected >= 400 and (
            picture() != before
            or list(Deployment.objects.values_list("state", "version_id")) != with_state
        ):
            problems.append(f"{method.upper()} {url}: refused, but it changed")
        Deployment.objects.all().delete()
        Solution.objects.all().delete()
        _clean(tree)
    assert not problems, "\n".join(problems)
