"""The demo data `make run` loads: complete, and the same after a second run."""

from django.core.management import call_command

from portal.models import Folder, RobotAccount, RoleAssignment
from portal.permissions import Action, can


def test_seed_demo_twice(db):
    call_command("seed_demo")
    counts = (Folder.objects.count(), RoleAssignment.objects.count(), RobotAccount.objects.count())
    call_command("seed_demo")
    assert counts == (
        Folder.objects.count(),
        RoleAssignment.objects.count(),
        RobotAccount.objects.count(),
    )
    robot = RobotAccount.objects.get(user__username="finance-robot").user
    assert not robot.has_usable_password()
    finance = Folder.objects.get(name="Finance")
    assert can(robot, Action.USE_CONNECTIONS, finance)
    assert not can(robot, Action.EDIT_CONNECTIONS, finance)
