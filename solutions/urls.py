"""The Solutions section, under /solutions/ (included from portal/urls.py).
Authoring pages here; the deployment pages add their own lines below."""

from django.urls import path

from solutions.views import authoring

SOLUTION = "solutions/<int:solution_id>/"
COMPONENT = SOLUTION + "components/<int:component_id>/"

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
]
