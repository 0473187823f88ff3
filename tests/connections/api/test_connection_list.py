"""The API's list of a folder's connections: what the pages would show
(``Connection.objects.visible_to``), in a number of queries that does not
grow with the folder."""

from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from tests.connections.api.helpers import API, make_connection
from tests.factories import assign


def _names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["items"]]


def test_the_list_holds_the_folder_s_connections_in_constant_queries(
    api, tree, django_assert_num_queries
):
    url = f"{API}/folders/{tree['payables'].pk}/connections"
    make_connection(tree["payables"], "A")
    make_connection(tree["finance"], "Above")
    api.get(url)  # the key's first use is written down: not the list's cost
    with CaptureQueriesContext(db) as few:
        assert _names(api.get(url)) == ["A"]
    for name in ("B", "C", "D"):
        make_connection(tree["payables"], name)
    with django_assert_num_queries(len(few)):
        assert _names(api.get(url)) == ["A", "B", "C", "D"]


def test_a_viewer_lists_and_a_role_without_view_does_not(api_for, tree, make_user):
    from django.contrib.auth.models import Permission

    from portal.models import Role

    make_connection(tree["hr"], "Payroll")
    viewer, jobs = make_user("viewer"), make_user("jobs")
    assign(viewer, tree["shared"], "Viewer")
    role = Role.objects.create(name="Jobs only")
    role.permissions.add(Permission.objects.get(codename="view_jobs"))
    assign(jobs, tree["hr"], "Jobs only")
    url = f"{API}/folders/{tree['hr'].pk}/connections"
    assert _names(api_for(viewer).get(url)) == ["Payroll"]
    assert api_for(jobs).get(url).status_code == 403
