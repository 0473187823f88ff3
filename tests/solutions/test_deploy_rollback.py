"""A failure injected at each step of a deployment (and of an upgrade)
leaves nothing behind: every step done is undone in reverse, and the
portal is as it was before."""

from __future__ import annotations

import pytest

from connections.models import Trigger
from solutions.deploy import actions, engine
from solutions.models import Deployment, DeploymentStep
from tests.factories import assign
from tests.solutions.deploy_helpers import (
    BASE,
    deploy,
    manifest,
    picture,
    run_all,
    settings_doc,
    version_of,
)

pytestmark = pytest.mark.django_db

NESTED = manifest(
    connections=[{**BASE["connections"][0], "folder": ["Inner"]}],
    processes=[{**BASE["processes"][0], "folder": ["Inner"]}],
)
STEP_COUNT = 7  # begin, 3 folders (New, New/Deep, New/Deep/Inner), connection, process, trigger


@pytest.fixture
def deployer(make_user, tree):
    user = make_user("deployer")
    assign(user, tree["shared"], "Folder Administrator")
    return user


@pytest.fixture
def fail_at():
    chosen = {}

    def hook(step):
        if step.position == chosen.get("position"):
            raise RuntimeError(f"injected failure at step {step.position}")

    engine.before_step_hooks.append(hook)
    yield chosen
    engine.before_step_hooks.remove(hook)


@pytest.mark.parametrize("position", range(1, STEP_COUNT + 1))
def test_a_failure_at_any_step_of_a_deployment_leaves_nothing(deployer, fail_at, position):
    version = version_of(NESTED)
    before = picture()
    fail_at["position"] = position
    deployment = actions.deploy(
        version=version, settings=settings_doc("Shared/New/Deep"), actor=deployer
    )
    assert deployment.steps.count() == STEP_COUNT
    assert run_all(deployment) == Deployment.State.FAILED
    deployment.refresh_from_db()
    assert f"injected failure at step {position}" in deployment.error
    assert picture() == before
    states = list(deployment.steps.order_by("position").values_list("state", flat=True))
    assert states[position - 1] == DeploymentStep.State.FAILED
    assert set(states[: position - 1]) <= {DeploymentStep.State.UNDONE}


def test_a_failure_at_any_step_of_an_upgrade_puts_back_the_deployment(deployer, fail_at):
    one = version_of()
    deployment, _ = deploy(one, deployer)
    trigger = Trigger.objects.get()
    Trigger.objects.filter(pk=trigger.pk).update(cursor="cursor-41")
    two = version_of(
        manifest(
            triggers=[{**BASE["triggers"][0], "filters": {"title_contains": "receipt"}}],
            processes=[{**BASE["processes"][0], "description": "New words"}],
        ),
        number=2,
        solution=one.solution,
    )
    before = picture()
    first = deployment.steps.count()
    positions = None
    for attempt in range(1, 20):
        fail_at["position"] = first + attempt
        actions.upgrade(
            deployment=deployment, version=two, settings=settings_doc(deployment.folder_path),
            actor=deployer,
        )  # fmt: skip
        latest = engine.current_steps(deployment)
        positions = positions or len(latest)
        if attempt > positions:
            break
        assert run_all(deployment) == Deployment.State.SUCCEEDED  # as it was
        deployment.refresh_from_db()
        assert "rolled back" in deployment.error
        assert deployment.version == one
        assert picture() == before, attempt
        first = deployment.steps.count()
    assert positions and positions >= 3
