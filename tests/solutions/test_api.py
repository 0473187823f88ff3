"""Solutions through the API: the list and a solution as the permission
module and the key's folder scope allow, a version's package (no secret),
an upload refused whole by field, refused without Solutions - Author and in
read-only mode."""

from __future__ import annotations

import itertools
import json

import pytest

from portal import api_keys
from portal.models import TenantSettings
from solutions import authoring, publishing
from solutions.models import Solution, SolutionVersion
from tests import leak_guard
from tests.connections.api.conftest import ApiClient
from tests.factories import assign

pytestmark = pytest.mark.django_db
API = "/api/v1"
_names = itertools.count()


def api_for(user, folder=None) -> ApiClient:
    issued = api_keys.issue(owner=user, name=f"pipeline {next(_names)}", actor=user, folder=folder)
    return ApiClient(issued.raw)


@pytest.fixture
def published(world, author):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, triggers=[world["trigger"]])
    return publishing.publish(solution, notes="First", actor=author)


def test_list_and_detail(world, published, viewer):
    api = api_for(viewer)
    listed = api.get(f"{API}/solutions").json()
    assert [(s["name"], s["latest_version"]) for s in listed["items"]] == [("Invoicing", 1)]
    detail = api.get(f"{API}/solutions/{published.solution_id}").json()
    assert detail["versions"][0]["number"] == 1 and detail["versions"][0]["notes"] == "First"


def test_out_of_sight_is_404_and_not_listed(world, published, make_user, tree):
    stranger = make_user("stranger")
    assign(stranger, tree["hr"], "Automation Developer")
    api = api_for(stranger)
    assert api.get(f"{API}/solutions").json()["items"] == []
    assert api.get(f"{API}/solutions/{published.solution_id}").status_code == 404
    url = f"{API}/solutions/{published.solution_id}/versions/1/package"
    assert api.get(url).status_code == 404


def test_a_key_scoped_elsewhere_does_not_see_it(world, published, author, tree):
    api = api_for(author, folder=tree["payables"])
    assert api.get(f"{API}/solutions").json()["items"] == []
    assert api.get(f"{API}/solutions/{published.solution_id}").status_code == 404


def test_the_package_holds_no_secret(world, published, viewer):
    response = api_for(viewer).get(f"{API}/solutions/{published.solution_id}/versions/1/package")
    assert response.status_code == 200
    text = response.content.decode()
    assert response.json()["format"] == 1
    assert world["signing_secret"] in leak_guard.secrets
    assert not [secret for secret in leak_guard.secrets if secret in text]
    assert (
        api_for(viewer)
        .get(f"{API}/solutions/{published.solution_id}/versions/9/package")
        .status_code
        == 404
    )


def test_upload_a_new_solution_then_a_version(world, published, author):
    package = published.manifest
    Solution.objects.all().delete()
    api = api_for(author)
    response = api.post(f"{API}/solutions/packages?folder_id={world['payables'].pk}", package)
    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["created"] and answer["version"]["uploaded"]
    assert answer["solution"]["source_folder_id"] == world["payables"].pk
    again = api.post(f"{API}/solutions/packages", package)
    assert again.status_code == 201 and again.json()["version"]["number"] == 2


def test_upload_needs_a_folder_for_a_new_solution(world, published, author):
    package = {**published.manifest, "solution": {"name": "Other", "description": ""}}
    response = api_for(author).post(f"{API}/solutions/packages", package)
    assert response.status_code == 422
    assert "folder_id" in response.json()["errors"]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda p: p.update(format=7), "format"),
        (lambda p: p["connections"][0].update(auth_type="magic"), "connections[0].auth_type"),
    ],
)
def test_a_bad_package_is_refused_whole_by_field(world, published, author, change, field):
    package = json.loads(json.dumps(published.manifest))
    change(package)
    url = f"{API}/solutions/packages?folder_id={world['folder'].pk}"
    response = api_for(author).post(url, package)
    assert response.status_code == 422
    assert field in response.json()["errors"]
    assert SolutionVersion.objects.count() == 1


def test_upload_needs_solutions_author(world, published, viewer):
    url = f"{API}/solutions/packages?folder_id={world['folder'].pk}"
    response = api_for(viewer).post(url, published.manifest)
    assert response.status_code == 403
    assert "Solutions - Author" in response.json()["detail"]
    assert SolutionVersion.objects.count() == 1


def test_upload_is_refused_in_read_only_mode(world, published, author):
    TenantSettings.objects.update_or_create(pk=1, defaults={"read_only": True})
    response = api_for(author).post(f"{API}/solutions/packages", published.manifest)
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]
    assert SolutionVersion.objects.count() == 1
    assert api_for(author).get(f"{API}/solutions").status_code == 200
