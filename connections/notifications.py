"""Telling the people responsible when a connection breaks (and, later, when
it recovers): the user who authenticated it and, in a shared folder, the
folder's administrators. One message per change of state."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from connections.models import Connection
from portal.permissions import folder_administrators


def recipients(connection: Connection) -> list[str]:
    people = []
    if connection.authenticated_by and connection.authenticated_by.is_active:
        people.append(connection.authenticated_by)
    people.extend(folder_administrators(connection.folder))
    return sorted({person.email for person in people if person.email})


def state_changed(connection_id: int) -> None:
    connection = (
        Connection.objects.select_related("folder", "authenticated_by")
        .filter(pk=connection_id)
        .first()
    )
    if connection is None:
        return
    to = recipients(connection)
    if not to:
        return
    url = settings.PORTAL_BASE_URL + reverse(
        "connection_detail", args=[connection.folder_id, connection.pk]
    )
    send_mail(
        subject=f"{connection.name} is {connection.get_state_display().lower()}",
        message=(
            f"The connection {connection.name} in {connection.folder.name} is now "
            f"{connection.get_state_display()}.\n\n{connection.last_error}\n\n"
            f"Open it to reconnect: {url}\n"
        ),
        from_email=None,
        recipient_list=to,
    )
