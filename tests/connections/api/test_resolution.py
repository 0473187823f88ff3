"""Which connection a job means: by id, by folder path (or folder id) and
connector and name, or the folder's default for the connector; never a
silent pick among several."""

from __future__ import annotations

import pytest

from connections.models import Connection
from tests.connections.api.helpers import API, make_connection
from tests.factories import assign

RESOLVE = f"{API}/connections/resolve"
CREDENTIALS = f"{API}/credentials"
AMBIGUOUS = (
    "Finance has 2 fakehub connections and none is the default: name one, or mark one as "
    "the default for the folder."
)


def _resolved(api, **params) -> int:
    response = api.get(RESOLVE, params)
    assert response.status_code == 200, response.content
    return response.json()["id"]


def _refused(api, status: int, **params) -> str:
    response = api.get(RESOLVE, params)
    assert response.status_code == status, response.content
    return response.json()["detail"]


def test_by_id(api, tree, fakehub):
    robot = make_connection(tree["finance"])
    assert _resolved(api, id=robot.pk) == robot.pk
    hidden = make_connection(tree["hr"])
    assert _refused(api, 404, id=hidden.pk) == "No such connection."


@pytest.mark.parametrize(
    "path", ["Shared/Finance", "shared/FINANCE", "/Shared/Finance/", " Shared / Finance "]
)
def test_by_folder_path_connector_and_name(api, tree, fakehub, path):
    robot = make_connection(tree["finance"])
    make_connection(tree["finance"], "Another")
    make_connection(tree["payables"])  # the same name one folder down
    assert _resolved(api, folder=path, connector="fakehub", name="Robot") == robot.pk
    assert _resolved(api, folder=path, connector="fakehub", name="rOBOT") == robot.pk


def test_subfolder_path(api, tree, fakehub):
    below = make_connection(tree["payables"])
    make_connection(tree["finance"])
    found = _resolved(api, folder="Shared/Finance/Payables", connector="fakehub", name="Robot")
    assert found == below.pk


@pytest.mark.parametrize("path", ["~", "My Workspace"])
def test_own_personal_workspace(api, dev, make_user, fakehub, path):
    mine = make_connection(dev.personal_workspace)
    make_connection(make_user("other").personal_workspace)
    assert _resolved(api, folder=path, connector="fakehub", name="Robot") == mine.pk
    # Without a name: its only fakehub connection.
    assert _resolved(api, folder=path, connector="fakehub") == mine.pk


def test_another_users_workspace_cannot_be_named(api, make_user, fakehub):
    other = make_user("other")
    make_connection(other.personal_workspace)
    name = other.personal_workspace.name
    detail = _refused(api, 404, folder=name, connector="fakehub", name="Robot")
    assert detail == f"No folder {name!r}."


def test_by_folder_id_and_connector(api, tree, fakehub):
    only = make_connection(tree["finance"])
    make_connection(tree["finance"], "Code", connector="github")
    assert _resolved(api, folder_id=tree["finance"].pk, connector="fakehub") == only.pk
    assert _resolved(api, folder_id=tree["finance"].pk, connector="github") != only.pk
    detail = _refused(api, 404, folder_id=tree["hr"].pk, connector="fakehub")
    assert detail == "No such folder."


def test_default_connection(api, tree, fakehub):
    first = make_connection(tree["finance"], "First")
    second = make_connection(tree["finance"], "Second")
    code = make_connection(tree["finance"], "Code", connector="github", is_default=True)
    finance = {"folder": "Shared/Finance", "connector": "fakehub"}

    # Several and no default: never a silent pick.
    assert _refused(api, 409, **finance) == AMBIGUOUS
    assert _refused(api, 409, folder_id=tree["finance"].pk, connector="fakehub") == AMBIGUOUS
    credentials = api.get(CREDENTIALS, finance)
    assert credentials.status_code == 409 and credentials.json()["detail"] == AMBIGUOUS

    marked = api.put(f"{API}/connections/{first.pk}/default")
    assert marked.status_code == 200 and marked.json()["is_default"] is True
    assert _resolved(api, **finance) == first.pk
    assert _resolved(api, folder_id=tree["finance"].pk, connector="fakehub") == first.pk
    assert api.get(CREDENTIALS, finance).json()["connection_id"] == first.pk

    # Marking another moves the default; the other connector's default stays.
    assert api.put(f"{API}/connections/{second.pk}/default").status_code == 200
    assert _resolved(api, **finance) == second.pk
    defaults = Connection.objects.filter(folder=tree["finance"], is_default=True)
    assert set(defaults.values_list("pk", flat=True)) == {second.pk, code.pk}
    assert api.get(f"{API}/connections/{first.pk}").json()["is_default"] is False
    # Marking it again changes nothing.
    assert api.put(f"{API}/connections/{second.pk}/default").status_code == 200
    assert _resolved(api, **finance) == second.pk

    # A name still wins over the default.
    assert _resolved(api, name="First", **finance) == first.pk

    cleared = api.delete(f"{API}/connections/{second.pk}/default")
    assert cleared.status_code == 200 and cleared.json()["is_default"] is False
    assert _refused(api, 409, **finance) == AMBIGUOUS


def test_default_is_per_folder(api, tree, fakehub):
    above = make_connection(tree["finance"], "Above", is_default=True)
    below = make_connection(tree["payables"], "Below")
    make_connection(tree["payables"], "Below too")
    assert api.put(f"{API}/connections/{below.pk}/default").status_code == 200
    above.refresh_from_db()
    assert above.is_default  # another folder's default is left alone
    assert _resolved(api, folder="Shared/Finance/Payables", connector="fakehub") == below.pk
    assert _resolved(api, folder="Shared/Finance", connector="fakehub") == above.pk


def test_missing_folder_connector_or_name(api, tree, fakehub):
    make_connection(tree["finance"])
    detail = _refused(api, 404, folder="Shared/Nope", connector="fakehub", name="Robot")
    assert detail == "No folder 'Shared/Nope'."
    assert _refused(api, 404, folder="Shared/Finance", connector="nope") == (
        "No nope connection in Finance."
    )
    assert _refused(api, 404, folder="Shared/Finance", connector="fakehub", name="Ghost") == (
        "No fakehub connection named 'Ghost' in Finance."
    )
    assert _refused(api, 404, folder="Shared/Finance/Payables", connector="fakehub") == (
        "No fakehub connection in Payables."
    )


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"connector": "fakehub"},
        {"folder": "Shared/Finance"},
        {"folder_id": "1"},
        {"name": "Robot"},
        {"folder": "", "connector": "fakehub"},
    ],
    ids=["nothing", "connector-only", "folder-only", "folder-id-only", "name-only", "empty-path"],
)
def test_missing_parameters(api, tree, fakehub, params):
    make_connection(tree["finance"])
    detail = _refused(api, 400, **params)
    assert detail.startswith("Name the connection: id, or folder (or folder_id) and connector")
    response = api.get(CREDENTIALS, params)
    assert response.status_code == 400 and response.json()["detail"] == detail


@pytest.mark.parametrize("endpoint", [RESOLVE, CREDENTIALS])
def test_a_folder_out_of_sight_answers_like_one_that_does_not_exist(
    api, api_for, dev, tree, fakehub, endpoint
):
    """The answer names the path as asked, whether nothing is there or the
    caller may not see it: a path cannot probe which folders exist."""
    make_connection(tree["hr"])
    tree["hr"].children.create(name="Payroll")
    for path in [
        "Shared/HR",  # exists, not visible
        "Shared/Nope",  # does not exist
        "Shared/HR/Payroll",  # exists below an invisible folder
        "Shared/HR/Nope",  # does not exist below an invisible folder
        "Shared/Nope/Deeper",  # does not exist below one that does not either
        "Other",  # a top-level folder nobody gave the caller
    ]:
        for name in ("Robot", None):
            params = {"folder": path, "connector": "fakehub"} | ({"name": name} if name else {})
            response = api.get(endpoint, params)
            assert response.status_code == 404, (path, response.content)
            assert response.json() == {"detail": f"No folder {path!r}."}, path
    # A key limited to Payables does not see Finance, which its user does.
    scoped = api_for(dev, folder=tree["payables"], name="payables only")
    make_connection(tree["finance"])
    for path in ("Shared/Finance", "Shared/Finance/Nope"):
        response = scoped.get(endpoint, {"folder": path, "connector": "fakehub"})
        assert response.status_code == 404
        assert response.json() == {"detail": f"No folder {path!r}."}


def test_viewer_resolves_but_may_not_use(tree, make_user, api_for, fakehub):
    viewer = make_user("viewer")
    assign(viewer, tree["finance"], "Viewer")
    api = api_for(viewer)
    robot = make_connection(tree["finance"])
    params = {"folder": "Shared/Finance", "connector": "fakehub", "name": "Robot"}
    assert _resolved(api, **params) == robot.pk
    refused = api.get(CREDENTIALS, params)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "You do not have Connections - Use in this folder."
