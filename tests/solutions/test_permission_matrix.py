"""The Solutions pages and API x every role x where the solution's source
folder stands: one exact status per row. A solution is seen with Solutions -
View in its source folder (404 without), authored with Solutions - Author
(403 without). The URL names here are rows of the portal's walk
(tests/portal/test_permission_matrix.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from django.urls import reverse

from portal import api_keys
from solutions import authoring, publishing
from solutions.models import Component, Solution, SolutionVersion
from tests.connections.api.conftest import ApiClient
from tests.factories import ConnectionFactory, assign

pytestmark = pytest.mark.django_db

TENANT_ADMIN = "Tenant administrator"
ROLE_ACTIONS = {
    "Folder Administrator": {"view", "author"},
    "Automation Developer": {"view", "author"},
    "Automation User": set(),
    "Viewer": {"view"},
    TENANT_ADMIN: {"view", "author"},
    None: set(),
}
PLACES = ["assigned", "subfolder", "unrelated", "other_workspace"]


@dataclass(frozen=True)
class SolutionPage:
    url_name: str
    method: str
    needs: str  # view or author
    ok: int
    target: str = "solution"  # solution, component, version
    data: dict = field(default_factory=dict)


SOLUTION_PAGES = [
    SolutionPage("solution_detail", "get", "view", 200),
    # Nothing picked: back to the page with a message.
    SolutionPage("solution_components_add", "post", "author", 302),
    SolutionPage("solution_component_edit", "get", "author", 200, "component"),
    SolutionPage("solution_component_edit", "post", "author", 400, "component", {"name": ""}),
    SolutionPage(
        "solution_component_lock", "post", "author", 302, "component", {"property": "name"}
    ),
    SolutionPage("solution_component_remove", "get", "author", 200, "component"),
    SolutionPage("solution_component_remove", "post", "author", 302, "component"),
    SolutionPage("solution_publish", "post", "author", 302),
    SolutionPage("solution_version_download", "get", "view", 200, "version"),
]


@dataclass(frozen=True)
class Page:
    """A Solutions page outside any one solution: everyone has Solutions -
    Author in their own workspace, so everyone gets ``status``."""

    url_name: str
    method: str
    status: int


PAGES = [
    Page("solution_list", "get", 200),
    Page("solution_new", "get", 200),
    Page("solution_new", "post", 400),  # nothing filled in
    Page("solution_upload", "get", 200),
    Page("solution_upload", "post", 400),  # no file
]

API_URL_NAMES = {
    "list_solutions",
    "get_solution",
    "download_solution_package",
    "upload_solution_package",
}
URL_NAMES = {page.url_name for page in SOLUTION_PAGES + PAGES}


def _place(name, tree, other):
    return {
        "assigned": tree["finance"],
        "subfolder": tree["payables"],
        "unrelated": tree["hr"],
        "other_workspace": other.personal_workspace,
    }[name]


def _user(role, make_user, tree):
    if role == TENANT_ADMIN:
        return make_user("member", is_superuser=True, is_staff=True)
    user = make_user("member")
    if role:
        assign(user, tree["finance"], role)
    return user


def _solution(folder) -> Solution:
    connection = ConnectionFactory(folder=folder, sandbox=True)
    solution = authoring.create_solution(name="Matrix", source_folder=folder)
    authoring.add_components(solution, connections=[connection])
    publishing.publish(solution)
    return solution


def _state(solution: Solution):
    return (
        list(Component.objects.filter(solution=solution).values("key", "properties", "locked")),
        SolutionVersion.objects.filter(solution=solution).count(),
    )


def _expected(role, place, needs, ok):
    visible_place = place in {"assigned", "subfolder"} or (
        role == TENANT_ADMIN and place != "other_workspace"
    )
    held = ROLE_ACTIONS[role] if visible_place else set()
    if "view" not in held:
        return 404
    return ok if needs in held else 403


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_solution_pages(client, tree, make_user, settings, role, place):
    settings.PORTAL_SANDBOX_ENABLED = True
    user = _user(role, make_user, tree)
    folder = _place(place, tree, make_user("someone-else"))
    client.force_login(user)
    problems = []
    for page in SOLUTION_PAGES:
        solution = _solution(folder)
        component = solution.components.first()
        args = [solution.pk]
        if page.target == "component":
            args.append(component.pk)
        elif page.target == "version":
            args.append(1)
        before = _state(solution)
        response = getattr(client, page.method)(reverse(page.url_name, args=args), page.data)
        expected = _expected(role, place, page.needs, page.ok)
        if response.status_code != expected:
            row = f"{page.method.upper()} {page.url_name}"
            problems.append(f"{row}: {response.status_code} (expected {expected})")
        if expected in {403, 404} and _state(solution) != before:
            problems.append(f"{page.method.upper()} {page.url_name}: refused, but it changed")
        Solution.objects.all().delete()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_pages_outside_a_solution(client, tree, make_user, role):
    client.force_login(_user(role, make_user, tree))
    problems = []
    for page in PAGES:
        response = getattr(client, page.method)(reverse(page.url_name))
        if response.status_code != page.status:
            row = f"{page.method.upper()} {page.url_name}"
            problems.append(f"{row}: {response.status_code} (expected {page.status})")
    assert not problems, "\n".join(problems)


def test_a_new_solution_only_in_a_folder_where_one_may_author(client, tree, make_user):
    user = _user("Viewer", make_user, tree)
    client.force_login(user)
    response = client.post(reverse("solution_new"), {"name": "X", "folder": tree["finance"].pk})
    assert response.status_code == 400
    assert not Solution.objects.exists()
    response = client.post(
        reverse("solution_new"), {"name": "X", "folder": user.personal_workspace.pk}
    )
    assert response.status_code == 302
    assert Solution.objects.get().source_folder == user.personal_workspace


_names = itertools.count()


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("role", list(ROLE_ACTIONS), ids=lambda r: r or "no-role")
def test_api(tree, make_user, settings, role, place):
    settings.PORTAL_SANDBOX_ENABLED = True
    user = _user(role, make_user, tree)
    folder = _place(place, tree, make_user("someone-else"))
    api = ApiClient(api_keys.issue(owner=user, name=f"k{next(_names)}", actor=user).raw)
    solution = _solution(folder)
    manifest = SolutionVersion.objects.get().manifest
    problems = []
    listed = [s["id"] for s in api.get("/api/v1/solutions").json()["items"]]
    if (solution.pk in listed) != (_expected(role, place, "view", 200) == 200):
        problems.append(f"list: {listed}")
    rows = [
        ("get", f"/api/v1/solutions/{solution.pk}", None, "view", 200),
        ("get", f"/api/v1/solutions/{solution.pk}/versions/1/package", None, "view", 200),
        # The package names its solution: a new version of it.
        ("post", "/api/v1/solutions/packages", manifest, "author", 201),
    ]
    for method, path, data, needs, ok in rows:
        response = getattr(api, method)(path, data)
        expected = _expected(role, place, needs, ok)
        if response.status_code != expected:
            problems.append(f"{method.upper()} {path}: {response.status_code} ({expected})")
    # A new solution kept in the folder: Solutions - Author there (404 out of sight).
    other = {**manifest, "solution": {"name": "Another", "description": ""}}
    response = api.post(f"/api/v1/solutions/packages?folder_id={folder.pk}", other)
    visible = _expected(role, place, "view", 200) == 200
    expected = _expected(role, place, "author", 201)
    if not visible and role in {"Automation User"} and place in {"assigned", "subfolder"}:
        expected = 403  # the folder is seen (Connections - View), Author missing
    if response.status_code != expected:
        problems.append(f"POST new solution: {response.status_code} ({expected})")
    assert not problems, "\n".join(problems)
