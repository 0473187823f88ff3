from django.urls import path

from connections.views import wizard

urlpatterns = [
    path(
        "folders/<int:folder_id>/connections/add/", wizard.choose_connector, name="connection_add"
    ),
]
