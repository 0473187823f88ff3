"""The Solutions section, under /solutions/ (included from portal/urls.py).
Authoring pages here; the deployment pages add their own lines below."""

from django.urls import path

from solutions.views import authoring, deployments

SOLUTION = "solutions/<int:solution_id>/"
COMPONENT = SOLUTION + "components/<int:component_id>/"
DEPLOYMENT = "solutions/deployments/<int:deployment_id>/"

urlpatterns = [
    path("solutions/", authoring.solution_list, name="solution_list"),
    path("solutions/new/", authoring.solution_new, name="solution_new"),
    path("solutions/upload/", authoring.solution_upload, name="solution_upload"),
    path(SOLUTION, authoring.solution_detail, name="solution_detail"),
    path(SOLUTION + "components/add/", authoring.components_add, name="solution_components_add"),
    path(COMPONENT + "edit/", authoring.component_edit, name="solution_component_edit"),
    path(COMPONENT + "lock/", authoring.component_lock, name="solution_component_lock"),
    path(COMPONENT + "remove/", authoring.component_remove, name="solution_component_remove"),
    path(SOLUTION + "publish/", authoring.solution_publish, name="solution_publish"),
    path(
        SOLUTION + "versions/<int:number>/download/",
        authoring.version_download,
        name="solution_version_download",
    ),
    # Deployments.
    path(
        SOLUTION + "versions/<int:number>/deploy/",
        deployments.version_deploy,
        name="solution_version_deploy",
    ),
    path(SOLUTION + "deployments/", deployments.solution_deployments, name="solution_deployments"),
    path(DEPLOYMENT, deployments.deployment_detail, name="deployment_detail"),
    path(DEPLOYMENT + "edit/", deployments.deployment_edit, name="deployment_edit"),
    path(DEPLOYMENT + "upgrade/", deployments.deployment_upgrade, name="deployment_upgrade"),
    path(DEPLOYMENT + "remove/", deployments.deployment_remove, name="deployment_remove"),
]
