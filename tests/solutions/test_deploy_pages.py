"""Deployment pages: Deploy a version through the form (each Authentication
type), its preflight before anything is written, Deploy refused while
blocking problems remain (what was typed kept), progress polled until done,
Edit deployment configuration (no Link to existing, no new Authentication
type), Upgrade with its preflight, Remove naming the connections that stay."""

from __future__ import annotations

import pytest
from django.urls import reverse

from connections.models import Connection, ConnectionState, Process, Trigger
from connections.triggers.polling import paused_because
from portal.models import Folder
from solutions.deploy import actions, engine
from solutions.models import Deployment, Solution
from tests.factories import ConnectionFactory, assign
from tests.solutions.deploy_helpers import (
    CONNECTION,
    PROCESS,
    TRIGGER,
    manifest,
    picture,
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
        f"{PROCESS}__webhook_url": "",
        f"{PROCESS}__job_queue": "on",
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


def post_and_run(client, url, data):
    """Post the form; run the queued deployment as the worker would."""
    with django_capture():
        response = client.post(url, data)
    if response.status_code == 302 and "/solutions/deployments/" in response["Location"]:
        deployment = Deployment.objects.order_by("-pk").first()
        engine.run(deployment.pk)
    return response


class django_capture:
    """Keep the task the commit would send (the test plays the worker)."""

    def __enter__(self):
        from unittest import mock

        self.patch = mock.patch.object(actions.run_deployment_task, "delay_on_commit")
        self.patch.start()

    def __exit__(self, *exc):
        self.patch.stop()


def test_preflight_first_writes_nothing_then_deploy(logged_in, version):
    before = picture()
    response = logged_in.post(deploy_url(version), {**form_data(), "step": "preflight"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="preflight"' in page and "Nothing has been written yet" in page
    assert "Folder Shared/Deployed" in page and 'data-testid="deploy"' in page
    assert picture() == before and not Deployment.objects.exists()

    response = post_and_run(logged_in, deploy_url(version), {**form_data(), "step": "deploy"})
    deployment = Deployment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("deployment_detail", args=[deployment.pk])
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.SUCCEEDED, deployment.error


def test_authenticate_after_deployment_through_the_form(logged_in, version):
    post_and_run(logged_in, deploy_url(version), {**form_data(), "step": "deploy"})
    folder = Folder.objects.get(name="Deployed")
    connection = Connection.objects.get(folder=folder)
    assert connection.state == ConnectionState.NOT_CONNECTED
    assert connection.authenticated_by is None
    assert paused_because(Trigger.objects.get(connection=connection).connection)
    item = Deployment.objects.get().items.get(component=CONNECTION)
    assert (item.auth_choice, item.created) == ("authenticate_after", True)
    # The folder's page lists it to authenticate, its user System.
    page = logged_in.get(reverse("folder_connections", args=[folder.pk])).content.decode()
    assert 'data-testid="to-authenticate"' in page
    assert reverse("connection_replace_secret", args=[folder.pk, connection.pk]) in page


def test_link_to_existing_through_the_form_offers_only_usable_connections(
    logged_in, version, tree, make_user
):
    usable = ConnectionFactory(folder=tree["finance"], sandbox=True, name="Shared records")
    elsewhere = make_user("stranger").personal_workspace
    hidden = ConnectionFactory(folder=elsewhere, sandbox=True, name="Not yours")
    page = logged_in.get(deploy_url(version)).content.decode()
    assert "Shared records" in page and "Not yours" not in page
    # A connection outside the picker is refused by name, what was typed kept.
    data = form_data(folder="Shared/Linked", auth="link_existing")
    data[f"{CONNECTION}__link"] = str(hidden.pk)
    response = logged_in.post(deploy_url(version), {**data, "step": "deploy"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert 'value="Shared/Linked"' in response.content.decode()
    # Chosen without a connection: asked for one.
    data[f"{CONNECTION}__link"] = ""
    response = logged_in.post(deploy_url(version), {**data, "step": "deploy"})
    assert response.status_code == 400
    assert "Choose the connection to link." in response.content.decode()
    data[f"{CONNECTION}__link"] = str(usable.pk)
    post_and_run(logged_in, deploy_url(version), {**data, "step": "deploy"})
    deployment = Deployment.objects.get()
    assert deployment.state == Deployment.State.SUCCEEDED, deployment.error
    assert not Connection.objects.filter(folder__name="Linked").exists()
    assert Trigger.objects.get().connection == usable


def test_configurable_by_users_through_the_form(logged_in, version):
    data = form_data(folder="Shared/Configurable", auth="configurable")
    post_and_run(logged_in, deploy_url(version), {**data, "step": "deploy"})
    deployment = Deployment.objects.get()
    assert deployment.state == Deployment.State.SUCCEEDED, deployment.error
    assert not Connection.objects.filter(folder__name="Configurable").exists()
    assert not Trigger.objects.exists()
    item = deployment.items.get(component=CONNECTION)
    assert item.auth_choice == "configurable" and item.object_id is None


def test_deploy_refused_while_the_preflight_finds_blocking_problems(logged_in, version, tree):
    folder = Folder.objects.get(name="Finance")
    ConnectionFactory(folder=folder, sandbox=True, name="Taken")
    data = form_data(folder="Shared/Finance", **{f"{CONNECTION}__name": "Taken"})
    before = picture()
    for step in ("preflight", "deploy"):
        response = logged_in.post(deploy_url(version), {**data, "step": step})
        assert response.status_code == 400
        page = response.content.decode()
        assert 'data-testid="preflight-blocking"' in page
        assert "A connection named &#x27;Taken&#x27; already exists" in page
        assert 'data-testid="deploy"' not in page  # no Deploy button
        assert 'value="Taken"' in page and 'value="Shared/Finance"' in page  # kept
    assert picture() == before and not Deployment.objects.exists()


def test_a_locked_property_is_not_offered(logged_in, tree):
    data = manifest()
    data["connections"][0]["locked"] = ["name", "auth_type"]
    solution = Solution.objects.create(name="Records", source_folder=tree["finance"])
    version = version_of(data, solution=solution)
    page = logged_in.get(deploy_url(version)).content.decode()
    assert f'name="{CONNECTION}__name"' not in page
    assert f'name="{CONNECTION}__auth"' not in page
    assert "Authenticate after deployment is done (locked)" in page
    # Sent anyway: not a field of the form, so not used.
    extra = {f"{CONNECTION}__auth": "configurable", f"{CONNECTION}__name": "Mine"}
    post_and_run(logged_in, deploy_url(version), {**form_data(), **extra, "step": "deploy"})
    connection = Connection.objects.get(folder__name="Deployed")
    assert connection.name == "Records"


def test_progress_polls_until_done(logged_in, version):
    with django_capture():
        logged_in.post(deploy_url(version), {**form_data(), "step": "deploy"})
    deployment = Deployment.objects.get()
    url = reverse("deployment_detail", args=[deployment.pk])
    headers = {"HX-Request": "true", "HX-Target": "deployment-progress"}
    response = logged_in.get(url, headers=headers)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert "<html" not in fragment and 'hx-trigger="every 1s"' in fragment
    assert "Connection Records (Sandbox)" in fragment  # the steps, listed
    engine.run(deployment.pk)
    response = logged_in.get(url, headers=headers)
    assert response.status_code == 286  # htmx stops polling
    fragment = response.content.decode()
    assert "Deployed" in fragment and "every 1s" not in fragment
    assert 'data-testid="to-authenticate"' in fragment


def _deployed(client, version, **data):
    post_and_run(client, deploy_url(version), {**form_data(**data), "step": "deploy"})
    deployment = Deployment.objects.get()
    assert deployment.state == Deployment.State.SUCCEEDED, deployment.error
    return deployment


def test_edit_configuration_never_offers_link_or_another_auth_type(logged_in, version):
    deployment = _deployed(logged_in, version)
    url = reverse("deployment_edit", args=[deployment.pk])
    page = logged_in.get(url).content.decode()
    assert "Link to existing" not in page.split('data-testid="edit-form"')[1]
    assert f'name="{CONNECTION}__auth"' not in page
    assert "Authenticate after deployment is done (changed only by an upgrade)" in page
    data = {
        f"{CONNECTION}__name": "Records renamed",
        f"{CONNECTION}__description": "",
        f"{PROCESS}__name": "Book",
        f"{PROCESS}__job_queue": "on",
        f"{TRIGGER}__enabled": "on",
        # Not offered: ignored.
        f"{CONNECTION}__auth": "configurable",
    }
    response = logged_in.post(url, {**data, "step": "preflight"})
    assert (
        response.status_code == 200
        and 'data-testid="save-configuration"' in response.content.decode()
    )
    response = post_and_run(logged_in, url, {**data, "step": "deploy"})
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.SUCCEEDED, deployment.error
    connection = Connection.objects.get(folder__name="Deployed")
    assert connection.name == "Records renamed"
    assert deployment.items.get(component=CONNECTION).auth_choice == "authenticate_after"
    # A blank name: refused, what was typed kept.
    response = logged_in.post(url, {**data, f"{PROCESS}__name": "", "step": "deploy"})
    assert response.status_code == 400
    assert 'value="Records renamed"' in response.content.decode()


def test_upgrade_with_its_preflight(logged_in, version, tree):
    deployment = _deployed(logged_in, version)
    url = reverse("deployment_upgrade", args=[deployment.pk])
    assert 'data-testid="no-newer-version"' in logged_in.get(url).content.decode()
    data = manifest()
    data["triggers"] = []  # version 2 drops the trigger
    version_of(data, number=2, solution=version.solution)
    page = logged_in.get(url).content.decode()
    assert "Version 2" in page and f'name="{CONNECTION}__auth"' in page  # offered again
    form = {**form_data(), "version": "2"}
    form.pop("folder")
    response = logged_in.post(url, {**form, "step": "preflight"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="preflight"' in page and 'data-verb="delete"' in page
    assert Deployment.objects.get().version.number == 1  # nothing written
    response = post_and_run(logged_in, url, {**form, "step": "deploy"})
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.SUCCEEDED, deployment.error
    assert deployment.version.number == 2 and not Trigger.objects.exists()
    assert Connection.objects.filter(folder__name="Deployed").count() == 1


def test_remove_names_the_connections_that_stay(logged_in, version):
    deployment = _deployed(logged_in, version)
    url = reverse("deployment_remove", args=[deployment.pk])
    page = logged_in.get(url).content.decode()
    assert 'data-testid="connections-stay"' in page and "Records" in page
    response = post_and_run(logged_in, url, {})
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.REMOVED, deployment.error
    assert Connection.objects.filter(name="Records").exists()
    assert not Trigger.objects.exists() and not Process.objects.exists()
    # Nothing more to change on a removed deployment.
    response = logged_in.post(url, {})
    assert response.status_code == 302
    assert Deployment.objects.get().state == Deployment.State.REMOVED


def test_the_solution_page_links_to_deploy_and_to_its_deployments(logged_in, version):
    _deployed(logged_in, version)
    page = logged_in.get(reverse("solution_detail", args=[version.solution_id])).content.decode()
    assert deploy_url(version) in page
    listing = reverse("solution_deployments", args=[version.solution_id])
    assert listing in page
    assert "Shared/Deployed" in logged_in.get(listing).content.decode()


def test_the_connection_list_shows_system_until_someone_authenticates(logged_in, version, deployer):
    _deployed(logged_in, version)
    connection = Connection.objects.get(folder__name="Deployed")
    url = reverse("folder_connections", args=[connection.folder_id])
    page = logged_in.get(url).content.decode()
    assert '<td data-testid="user">System</td>' in page
    Connection.objects.filter(pk=connection.pk).update(
        authenticated_by=deployer, state=ConnectionState.CONNECTED
    )
    page = logged_in.get(url).content.decode()
    assert f'<td data-testid="user">{deployer.username}</td>' in page
    assert 'data-testid="to-authenticate"' not in page
