"""The Solutions pages: the list's empty state and nav link, a solution
made and its components picked, edited (a refusal by field keeps what was
typed and changes nothing), locked by htmx, removed after asking, published,
and a package uploaded or refused whole."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from solutions import authoring, publishing
from solutions.models import Component, Solution, SolutionVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, author):
    client.force_login(author)
    return client


def test_the_list_is_empty_at_first_and_linked_from_the_shell(signed_in):
    page = signed_in.get(reverse("solution_list")).content.decode()
    assert 'data-testid="solutions-empty"' in page
    assert f'href="{reverse("solution_list")}"' in page
    assert "New solution" in page and "Upload package" in page


def test_author_a_solution_through_the_pages(signed_in, world):
    response = signed_in.post(
        reverse("solution_new"), {"name": "Invoicing", "folder": world["folder"].pk}
    )
    solution = Solution.objects.get()
    assert response["Location"] == reverse("solution_detail", args=[solution.pk])
    page = signed_in.get(response["Location"]).content.decode()
    assert "Components" in page and 'data-testid="candidate-triggers"' in page
    signed_in.post(
        reverse("solution_components_add", args=[solution.pk]), {"trigger": world["trigger"].pk}
    )
    assert solution.components.count() == 3
    page = signed_in.get(reverse("solution_detail", args=[solution.pk])).content.decode()
    for label in ("Connection name", "Connection description", "Authentication type"):
        assert label in page
    # The connections a process requires, shown though no trigger links them.
    signed_in.post(
        reverse("solution_components_add", args=[solution.pk]), {"process": world["payments"].pk}
    )
    assert solution.components.filter(connection=world["ledger"]).exists()


def test_an_object_not_offered_is_not_added(signed_in, world, tree):
    solution = authoring.create_solution(name="Payables", source_folder=world["payables"])
    signed_in.post(
        reverse("solution_components_add", args=[solution.pk]), {"trigger": world["trigger"].pk}
    )
    assert not solution.components.exists()


def test_a_refused_edit_names_the_field_and_changes_nothing(signed_in, world):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, connections=[world["records"]])
    component = solution.components.get()
    url = reverse("solution_component_edit", args=[solution.pk, component.pk])
    response = signed_in.post(url, {"name": " ", "description": "typed", "auth_type": "pat"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "There is a problem" in page and "typed" in page
    component.refresh_from_db()
    assert component.properties["name"] == "Records" and component.properties["description"]
    response = signed_in.post(
        url,
        {"name": "Records (prod)", "description": "", "auth_type": "pat", "locked": ["name"]},
    )
    assert response.status_code == 302
    component.refresh_from_db()
    assert component.properties["name"] == "Records (prod)" and component.locked == ["name"]


def test_a_trigger_is_edited_with_the_connection_pages_settings(signed_in, world):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, triggers=[world["trigger"]])
    component = solution.components.get(kind="trigger")
    url = reverse("solution_component_edit", args=[solution.pk, component.pk])
    page = signed_in.get(url).content.decode()
    assert "Title contains" in page and "Enabled" in page
    response = signed_in.post(url, {"field_title_contains": "x" * 5000, "enabled": "on"})
    assert response.status_code == 400
    response = signed_in.post(url, {"field_title_contains": "paid"})
    assert response.status_code == 302
    component.refresh_from_db()
    assert component.properties["filters"] == {"title_contains": "paid"}
    assert component.properties["enabled"] is False


def test_a_lock_toggle_by_htmx_answers_the_panel(signed_in, world):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, connections=[world["records"]])
    component = solution.components.get()
    response = signed_in.post(
        reverse("solution_component_lock", args=[solution.pk, component.pk]),
        {"property": "auth_type", "locked": "1"},
        headers={"HX-Request": "true", "HX-Target": "components"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="panel" id="components"')
    assert 'aria-pressed="true"' in body
    component.refresh_from_db()
    assert component.locked == ["auth_type"]


def test_remove_asks_first_and_names_what_goes_with_it(signed_in, world):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, triggers=[world["trigger"]])
    component = solution.components.get(kind="connection")
    url = reverse("solution_component_remove", args=[solution.pk, component.pk])
    page = signed_in.get(url).content.decode()
    assert f"trigger-{world['trigger'].pk}" in page and "Remove component" in page
    assert solution.components.count() == 3
    signed_in.post(url)
    assert list(solution.components.values_list("kind", flat=True)) == ["process"]


def test_publish_refused_names_the_deleted_component(signed_in, world):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, processes=[world["payments"]])
    world["ledger"].delete()
    response = signed_in.post(reverse("solution_publish", args=[solution.pk]))
    assert response.status_code == 400
    assert "(Ledger) was deleted" in response.content.decode()
    assert not SolutionVersion.objects.exists()
    Component.objects.filter(connection__isnull=True, kind="connection").delete()
    response = signed_in.post(reverse("solution_publish", args=[solution.pk]), {"notes": "v1"})
    assert response.status_code == 302
    page = signed_in.get(reverse("solution_detail", args=[solution.pk])).content.decode()
    assert 'data-testid="download-1"' in page


def test_upload_page(signed_in, world):
    solution = authoring.create_solution(name="Invoicing", source_folder=world["folder"])
    authoring.add_components(solution, triggers=[world["trigger"]])
    text = publishing.package_text(publishing.publish(solution))
    bad = json.loads(text)
    bad["format"] = 3
    response = signed_in.post(
        reverse("solution_upload"),
        {"package": SimpleUploadedFile("p.json", json.dumps(bad).encode())},
    )
    assert response.status_code == 400
    assert "format: version 3 is newer" in response.content.decode()
    assert SolutionVersion.objects.count() == 1
    response = signed_in.post(
        reverse("solution_upload"), {"package": SimpleUploadedFile("p.json", text.encode())}
    )
    assert response.status_code == 302
    version = SolutionVersion.objects.get(number=2)
    assert version.uploaded and version.solution == solution
