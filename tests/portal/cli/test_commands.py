"""Each portal-cli command against a live portal: its table, its JSON, the
names it resolves (ids, paths, names, FOLDER/NAME), its refusals and exit
codes, every error in one line on stderr."""

from __future__ import annotations

import pytest

from connections.models import Connection, ConnectionState, HealthCheck
from portal.cli import output
from portal.models import AuditRecord
from tests.connections.fake_provider import GOOD_TOKEN
from tests.portal.cli.conftest import one_line_error


def test_folders(cli, connections, tree):
    table = cli("folders")
    assert table.exit_code == 0, table.stderr
    assert "Shared/Finance/Payables" in table.stdout
    assert "HR" not in table.stdout  # out of the robot's sight
    listed = cli("folders", "--json").json()
    # The robot's own workspace, then what its role on Finance shows.
    assert [(f["path"], f["kind"]) for f in listed] == [
        ("ci-bot", "personal"),
        ("Shared/Finance", "shared"),
        ("Shared/Finance/Payables", "shared"),
    ]
    assert listed[1]["id"] == tree["finance"].pk
    mine = cli("connections", "~", "--json")
    assert mine.exit_code == 0 and mine.json() == []


def test_connections_everywhere_and_in_one_folder(cli, connections, tree):
    table = cli("connections")
    assert table.exit_code == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header == ["ID", "FOLDER", "NAME", "CONNECTOR", "STATUS", "ACCOUNT"]
    assert "octo-robot" in table.stdout and "Connected" in table.stdout

    everywhere = cli("connections", "--json").json()
    assert {(c["folder_path"], c["name"]) for c in everywhere} == {
        ("Shared/Finance", "Broken"),
        ("Shared/Finance", "Robot"),
        ("Shared/Finance/Payables", "Robot"),
    }
    for named in ("Shared/Finance", "shared/finance", "Finance", str(tree["finance"].pk)):
        here = cli("connections", named, "--json")
        assert here.exit_code == 0, (named, here.stderr)
        assert sorted(c["name"] for c in here.json()) == ["Broken", "Robot"], named
    filtered = cli("connections", "Finance", "--state", "connected", "--json").json()
    assert len(filtered) == 2
    assert cli("connections", "Finance", "--connector", "other", "--json").json() == []


def test_a_folder_out_of_sight_is_not_found(cli, connections, tree):
    for named in ("HR", "Shared/HR", str(tree["hr"].pk), "Nowhere"):
        message = one_line_error(cli("connections", named), 3)
        assert "No folder" in message


def test_show_by_id_path_and_name(cli, connections, tree, portal):
    robot = connections["robot"]
    by_id = cli("show", str(robot.pk), "--json")
    assert by_id.exit_code == 0, by_id.stderr
    shown = by_id.json()
    assert shown["name"] == "Robot" and shown["folder_path"] == "Shared/Finance"
    assert shown["page_url"] == f"{portal.url}/folders/{tree['finance'].pk}/connections/{robot.pk}/"
    assert "secret" not in shown and GOOD_TOKEN not in by_id.stdout
    assert cli("show", "Shared/Finance/Robot", "--json").json()["id"] == robot.pk
    assert cli("show", "finance/robot", "--json").json()["id"] == robot.pk
    assert cli("show", "Payables/Robot", "--json").json()["id"] == connections["payables"].pk
    assert cli("show", "Broken", "--json").json()["id"] == connections["broken"].pk

    table = cli("show", str(robot.pk))
    assert table.exit_code == 0
    assert "Shared/Finance" in table.stdout and "octo-robot" in table.stdout


def test_an_ambiguous_name_lists_the_candidates(cli, connections):
    message = one_line_error(cli("show", "Robot"), 2)
    assert f"Shared/Finance/Robot (id {connections['robot'].pk})" in message
    assert f"Shared/Finance/Payables/Robot (id {connections['payables'].pk})" in message


def test_unknown_connections_are_not_found(cli, connections, tree):
    from tests.factories import ConnectionFactory

    hidden = ConnectionFactory(folder=tree["hr"], name="Hidden")
    for named in (str(hidden.pk), "999999", "Hidden", "Finance/Nope"):
        one_line_error(cli("show", named), 3)


def test_check_a_healthy_connection(cli, connections, provider):
    ran = cli("check", "Finance/Robot")
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("Robot: Connected (HTTP 200 in ")
    answer = cli("check", str(connections["robot"].pk), "--json").json()
    assert answer["ok"] is True and answer["state"] == "connected"
    assert HealthCheck.objects.filter(connection=connections["robot"]).count() == 2


def test_check_an_unhealthy_connection_exits_5(cli, connections):
    ran = cli("check", "Finance/Broken")
    assert ran.exit_code == 5, (ran.stdout, ran.stderr)
    assert "Needs reconnect" in ran.stdout or "HTTP 401" in ran.stdout
    assert Connection.objects.get(pk=connections["broken"].pk).state != ConnectionState.CONNECTED
    answer = cli("check", "Finance/Broken", "--json")
    assert answer.exit_code == 5
    assert answer.json()["ok"] is False


def test_check_a_disabled_connection_is_refused(cli, connections):
    Connection.objects.filter(pk=connections["robot"].pk).update(is_enabled=False)
    message = one_line_error(cli("check", "Finance/Robot"), 4)
    assert "is disabled: enable it first. (HTTP 409)" in message


def test_credentials_for_scripts(cli, connections, monkeypatch):
    ran = cli("credentials", "Finance/Robot", "--job-id", "job-42")
    assert ran.exit_code == 0, ran.stderr
    answer = ran.json()
    assert answer["secret"] == {"token": GOOD_TOKEN}
    assert answer["headers"]["Authorization"] == f"Bearer {GOOD_TOKEN}"
    assert ran.stderr == ""  # not a terminal: no warning
    read = AuditRecord.objects.filter(action=AuditRecord.Action.CREDENTIALS_READ).latest("pk")
    assert read.job_id == "job-42"

    only = cli("credentials", str(connections["robot"].pk), "--secret", "token")
    assert only.stdout == GOOD_TOKEN + "\n"
    message = one_line_error(cli("credentials", "Finance/Robot", "--secret", "password"), 2)
    assert "it has: token" in message

    monkeypatch.setattr(output, "is_terminal", lambda: True)
    on_terminal = cli("credentials", "Finance/Robot", "--secret", "token")
    assert on_terminal.exit_code == 0
    assert "warning: this prints a secret" in on_terminal.stderr


def test_open_prints_the_page_and_opens_it_from_a_terminal(
    cli, connections, tree, portal, monkeypatch
):
    robot = connections["robot"]
    page = f"{portal.url}/folders/{tree['finance'].pk}/connections/{robot.pk}/"
    ran = cli("open", "Finance/Robot")
    assert ran.exit_code == 0 and ran.stdout == page + "\n"

    opened = []

    class Browser:
        def open(self, url):
            opened.append(url)
            return True

    monkeypatch.setattr(output, "is_terminal", lambda: True)
    monkeypatch.setattr(output.webbrowser, "get", lambda: Browser())
    assert cli("open", str(robot.pk)).exit_code == 0
    assert opened == [page]
    assert cli("open", str(robot.pk), "--no-browser").exit_code == 0
    assert opened == [page]


def test_add_prints_the_wizard_with_folder_and_connector_chosen(
    cli, connections, tree, portal, client, make_user
):
    ran = cli("add", "Payables", "fakehub")
    assert ran.exit_code == 0, ran.stderr
    url = ran.stdout.strip()
    assert url == f"{portal.url}/folders/{tree['payables'].pk}/connections/add/fakehub/"
    # The address is the wizard's step for that folder and connector.
    from tests.factories import assign

    person = make_user("dana")
    assign(person, tree["finance"], "Automation Developer")
    client.force_login(person)
    step = client.get(url.removeprefix(portal.url), follow=True)
    assert step.status_code == 200
    assert "FakeHub" in step.content.decode()
    assert "Payables" in step.content.decode()
    one_line_error(cli("add", "Nowhere", "fakehub"), 3)


@pytest.mark.parametrize(
    "args", [(), ("show",), ("folders", "--bogus"), ("nosuchcommand",), ("check", "1", "2")]
)
def test_usage_errors_exit_2(cli, args):
    message = one_line_error(cli(*args), 2)
    assert "--help" in message


def test_a_refused_key_exits_4(run, portal, connections):
    message = one_line_error(run("folders", url=portal.url, key="cpk_not_a_key"), 4)
    assert "This API key is not valid. (HTTP 401)" in message


def test_not_signed_in_exits_4(run):
    message = one_line_error(run("folders"), 4)
    assert "portal-cli login" in message


def test_an_unreachable_portal_is_one_line(run):
    message = one_line_error(run("folders", url="http://127.0.0.1:9", key="cpk_x"), 1)
    assert "Cannot reach http://127.0.0.1:9" in message


def test_an_address_that_is_not_the_api(run, portal):
    # The portal's pages answer HTML, not the API's JSON.
    message = one_line_error(run("folders", url=portal.url + "/accounts", key="cpk_x"), 1)
    assert "did not answer as the portal's API" in message


def test_a_bad_address_is_a_usage_error(run):
    one_line_error(run("folders", url="ftp://example.com", key="cpk_x"), 2)
