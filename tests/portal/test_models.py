"""The portal's QuerySet methods: the rules the pages read by."""

from datetime import timedelta

from django.utils import timezone

from portal import api_keys
from portal.models import ApiKey, RobotAccount, RoleAssignment
from tests.factories import assign


def test_assignments_applying_to_a_folder_are_those_on_it_and_above(tree, make_user):
    user = make_user("ada")
    above = assign(user, tree["shared"], "Viewer")
    here = assign(user, tree["finance"], "Automation User")
    assign(user, tree["payables"], "Automation Developer")  # below: not here
    assign(user, tree["hr"], "Viewer")  # beside
    assign(user, tree["other"], "Viewer")  # elsewhere
    assert set(RoleAssignment.objects.applying_to(tree["finance"])) == {above, here}


def test_robots_count_their_active_keys_only(tenant_admin):
    robot = api_keys.create_robot(name="invoice-bot", description="", actor=tenant_admin)
    idle = api_keys.create_robot(name="idle-bot", description="", actor=tenant_admin)
    for name in ("live", "revoked", "expired"):
        api_keys.issue(owner=robot.user, name=name, days=7, actor=tenant_admin)
    keys = {key.name: key for key in ApiKey.objects.filter(user=robot.user)}
    api_keys.revoke(keys["revoked"], actor=tenant_admin)
    ApiKey.objects.filter(pk=keys["expired"].pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    counts = dict(RobotAccount.objects.with_active_key_counts().values_list("pk", "active_keys"))
    assert counts == {robot.pk: 1, idle.pk: 0}
