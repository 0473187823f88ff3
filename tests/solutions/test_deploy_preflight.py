"""The preflight reports every problem it knows, before anything is
written, and the deployment is refused while a blocking one remains."""

from __future__ import annotations

import pytest

from connections.models import ConnectionState
from connections.triggers.processes import create_process
from solutions.deploy import actions
from solutions.deploy.preflight import preflight
from solutions.models import Deployment
from tests.factories import ConnectionFactory, assign
from tests.solutions.deploy_helpers import (
    BASE,
    CONNECTION,
    PROCESS,
    TRIGGER,
    manifest,
    picture,
    settings_doc,
    version_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployer(make_user, tree):
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    return user


def _wheres(version, user, folder="Shared/Finance", **sections):
    check = preflight(version, settings_doc(folder, **sections), user)
    return check, {p.where: p for p in check.problems}


def test_a_clean_preflight_shows_the_plan_and_writes_nothing(deployer):
    before = picture()
    check = preflight(version_of(), settings_doc("Shared/New"), deployer)
    assert check.ok
    assert [(s.verb, s.label.split(" ")[0]) for s in check.shown()] == [
        ("create", "Folder"),
        ("create", "Connection"),
        ("create", "Process"),
        ("create", "Event"),
    ]
    assert check.summary() == "Create 4."
    assert picture() == before


def test_missing_connector_and_auth_type(deployer):
    data = manifest(
        connections=[
            {**BASE["connections"][0], "connector": "nowhere"},
            {**BASE["connections"][0], "key": "connection-2", "name": "Other",
             "auth_type": "api_key"},
        ],
        triggers=[],
        processes=[{**BASE["processes"][0], "requires": []}],
    )  # fmt: skip
    _, problems = _wheres(version_of(data), deployer)
    assert "catalog" in problems[f"connections.{CONNECTION}.connector"].message
    assert "offers no api_key" in problems["connections.connection-2.auth_type"].message


def test_names_that_collide_in_the_target_folder(deployer, tree):
    ConnectionFactory(folder=tree["finance"], sandbox=True, name="records")
    create_process(folder=tree["finance"], name="Book", job_queue=True)
    _, problems = _wheres(version_of(), deployer)
    assert "already exists" in problems[f"connections.{CONNECTION}.name"].message
    assert "already exists" in problems[f"processes.{PROCESS}.name"].message


def test_a_sign_in_with_no_portal_app_here_is_a_warning(deployer, settings):
    settings.PORTAL_OAUTH_APPS = {}
    oauth = {**BASE["connections"][0], "auth_type": "oauth2_authorization_code"}
    check, problems = _wheres(version_of(manifest(connections=[oauth])), deployer, "Shared/New")
    warning = problems[f"connections.{CONNECTION}.auth_type"]
    assert not warning.blocking and check.ok
    assert "No OAuth 2.0 app is registered for Sandbox" in warning.message
    own = {**oauth, "own_app": True}
    with_own = version_of(manifest(connections=[own]), number=2)
    _, problems = _wheres(with_own, deployer, "Shared/New")
    assert f"connections.{CONNECTION}.auth_type" not in problems
    settings.PORTAL_OAUTH_APPS = {"sandbox": {"client_id": "registered"}}
    registered = version_of(manifest(connections=[oauth]), number=3)
    _, problems = _wheres(registered, deployer, "Shared/New")
    assert f"connections.{CONNECTION}.auth_type" not in problems


def test_linked_connection_unhealthy_or_without_the_scopes(deployer, tree):
    unhealthy = ConnectionFactory(
        folder=tree["finance"], sandbox=True, name="Broken", state=ConnectionState.NEEDS_RECONNECT
    )
    _, problems = _wheres(
        version_of(), deployer, "Shared/New",
        connections={CONNECTION: {"auth": "link_existing", "link": unhealthy.pk}},
    )  # fmt: skip
    warning = problems[f"connections.{CONNECTION}.link"]
    assert not warning.blocking and "Needs reconnect" in warning.message
    narrow = ConnectionFactory(
        folder=tree["finance"],
        sandbox=True,
        name="Narrow",
        auth_type="oauth2_authorization_code",
        secret={"access_token": "a", "refresh_token": "r", "scope": "profile"},
    )
    check, problems = _wheres(
        version_of(manifest(), number=2), deployer, "Shared/New",
        connections={CONNECTION: {"auth": "link_existing", "link": narrow.pk}},
    )  # fmt: skip
    assert "records.read" in problems[f"triggers.{TRIGGER}.connection"].message
    assert not check.ok


def test_folders_the_deployer_may_not_create_and_deploy_refused(make_user, tree):
    developer = make_user("developer")
    assign(developer, tree["finance"], "Automation Developer")  # no Deploy, no Manage access
    _, problems = _wheres(version_of(), developer, "Shared/Finance/New")
    assert (
        "Solutions - Deploy" in problems["folder"].message or "Manage" in problems["folder"].message
    )
    before = picture()
    with pytest.raises(actions.DeployRefused):
        actions.deploy(
            version=version_of(manifest(), number=2),
            settings=settings_doc("Shared/Finance/New"),
            actor=developer,
        )
    assert picture() == before and not Deployment.objects.exists()


def test_folder_creation_needs_manage_access(make_user, tree):
    from django.contrib.auth.models import Permission

    from portal.models import Role

    role = Role.objects.create(name="Deployer only")
    role.permissions.set(Permission.objects.filter(codename__in=["deploy_solutions"]))
    user = make_user("deploys")
    assign(user, tree["finance"], "Deployer only")
    _, problems = _wheres(version_of(), user, "Shared/Finance/New")
    assert "Folder - Manage access" in problems["folder"].message
    assert preflight(version_of(manifest(), number=2), settings_doc("Shared/Finance"), user).ok


def test_locked_properties_changed(deployer):
    data = manifest(
        connections=[{**BASE["connections"][0], "locked": ["name", "auth_type"]}],
        triggers=[{**BASE["triggers"][0], "locked": ["filters"]}],
    )
    _, problems = _wheres(
        version_of(data), deployer, "Shared/New",
        connections={CONNECTION: {"name": "Mine", "auth": "configurable"}},
        triggers={TRIGGER: {"filters": {"title_contains": "x"}}},
    )  # fmt: skip
    assert "locked" in problems[f"connections.{CONNECTION}.name"].message
    assert "locked" in problems[f"connections.{CONNECTION}.auth"].message
    assert "locked" in problems[f"triggers.{TRIGGER}.filters"].message
