"""Deployment pages: Deploy a version through the form (each Authentication
type), its preflight before anything is written, Deploy refused while
blocking problems remain (what was typed kept), progress polled until done,
Edit deployment configuration (no Link to existing, no new Authentication
type), Upgrade with its preflight, Remove naming the connections that stay."""

from __future__ import annotations

import pytest
from django.urls import reverse

from solutions.models import Solution
from tests.factories import assign
from tests.solutions.deploy_helpers import (
    CONNECTION,
    PROCESS,
    TRIGGER,
    version_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployer(make_user, tree):
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    return user


@pytest.fixture
def logged_in(client, deployer):
    client.force_login(deployer)
    return client


@pytest.fixture
def version(tree):
    """Version 1 of a solution kept in Finance (seen with Solutions - View there)."""
    solution = Solution.objects.create(name="Records", source_folder=tree["finance"])
    return version_of(solution=solution)


def deploy_url(version) -> str:
    return reverse("solution_version_deploy", args=[version.solution_id, version.number])


def form_data(folder="Shared/Deployed", auth="authenticate_after", **more) -> dict:
    data = {
        "folder": folder,
        f"{CONNECTION}__auth": auth,
        f"{CONNECTION}__name": "Records",
        f"{CONNECTION}__description": "The records",
        f"{PROCESS}__name": "Book",
        f"{PROCESS}__description": "",
        f"{TRIGGER}__enabled": "on",
    }
    data.update(more)
    return data


def run_queued(django_capture_on_commit_callbacks, post):
    """Post, and run the deployment as the worker would (the task itself is not sent)."""
    with django_capture_on_commit_callbacks(execute=False):
        response = post()
    return response


def test_the_deploy_form_shows_each_authentication_type(logged_in, version):
    response = logged_in.get(deploy_url(version))
    assert response.status_code == 200
    page = response.content.decode()
    for label in (
        "Configurable by users",
        "Authenticate after deployment is done",
        "Link to existing",
        "Target folder",
    ):
        assert label in page
