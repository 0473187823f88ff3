"""In read-only mode portal-cli still reads, and its managing commands
(check, add) exit 4 saying that connections are managed in the portal's
pages."""

from __future__ import annotations

from connections.models import HealthCheck
from portal.actions import set_governance
from tests.portal.cli.conftest import one_line_error


def test_check_and_add_are_refused_reading_still_works(cli, connections, tenant_admin, portal):
    set_governance(allow_shared_connection_creation=True, changed_by=tenant_admin, read_only=True)
    checks = HealthCheck.objects.count()

    for args in (("check", "Finance/Robot"), ("add", "Finance", "fakehub")):
        message = one_line_error(cli(*args), 4)
        assert "read-only mode: connections are managed in the portal's pages" in message
        assert f"Go to {portal.url}/" in message
    assert HealthCheck.objects.count() == checks

    assert cli("connections", "--json").exit_code == 0
    assert cli("show", "Finance/Robot").exit_code == 0
    assert cli("credentials", "Finance/Robot", "--secret", "token").exit_code == 0
    assert cli("open", "Finance/Robot", "--no-browser").exit_code == 0

    set_governance(allow_shared_connection_creation=True, changed_by=tenant_admin, read_only=False)
    assert cli("check", "Finance/Robot").exit_code == 0
    assert cli("add", "Finance", "fakehub").exit_code == 0
