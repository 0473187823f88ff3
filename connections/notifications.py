"""Telling the people responsible when a connection breaks and when it
recovers: the user who authenticated it and, in a shared folder, the folder's
administrators. One message per change of state, never one per failed check
(callers send only when the state changed: connections.actions, refresh)."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from connections.models import Connection, ConnectionState
from portal.permissions import folder_administrators

SUBJECTS = {
    ConnectionState.NEEDS_RECONNECT: "{name} needs reconnecting",
    ConnectionState.MISCONFIGURED: "{name} is misconfigured",
    ConnectionState.DEGRADED: "{name} is degraded",
}
WHAT_TO_DO = {
    ConnectionState.NEEDS_RECONNECT: (
        "Open it and choose Reconnect (for a token or key: Replace secret) to sign in again"
    ),
    ConnectionState.MISCONFIGURED: "Open it to fix its settings or permissions",
    ConnectionState.DEGRADED: (
        "The portal keeps checking it and will write again when it recovers. Open it to see "
        "its check history"
    ),
}


def recipients(connection: Connection) -> list[str]:
    people = []
    if connection.authenticated_by and connection.authenticated_by.is_active:
        people.append(connection.authenticated_by)
    people.extend(folder_administrators(connection.folder))
    return sorted({person.email for person in people if person.email})


def connection_url(connection: Connection) -> str:
    return settings.PORTAL_BASE_URL + reverse(
        "connection_detail", args=[connection.folder_id, connection.pk]
    )


def state_changed(connection_id: int, previous: str | None = None) -> None:
    """The connection's state changed (to ``connection.state``, from
    ``previous`` when known): broken, or recovered."""
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
    url = connection_url(connection)
    where = f"The connection {connection.name} in {connection.folder.name}"
    if connection.state == ConnectionState.CONNECTED:
        was = f" (it was {ConnectionState(previous).label})" if previous else ""
        subject = f"{connection.name} has recovered"
        message = f"{where} is connected again{was}: its last check succeeded.\n\nOpen it: {url}\n"
    else:
        state = connection.get_state_display()
        todo = WHAT_TO_DO.get(connection.state, "Open it")
        failures = (
            f" after {connection.consecutive_failures} failed checks in a row"
            if connection.state == ConnectionState.DEGRADED and connection.consecutive_failures > 1
            else ""
        )
        subject = SUBJECTS.get(connection.state, "{name} is " + state.lower()).format(
            name=connection.name
        )
        message = f"{where} is now {state}{failures}.\n\n{connection.last_error}\n\n{todo}: {url}\n"
    send_mail(subject=subject, message=message, from_email=None, recipient_list=to)


def authenticator_deactivated(connections: list[Connection]) -> int:
    """The user who authenticated these shared connections was deactivated:
    they keep working, and each folder's administrators get one message
    asking them to reconnect them under an active account. Returns the
    number of messages sent."""
    by_folder: dict[int, list[Connection]] = defaultdict(list)
    for connection in connections:
        if not connection.folder.is_personal:
            by_folder[connection.folder_id].append(connection)
    sent = 0
    for group in by_folder.values():
        folder = group[0].folder
        to = sorted({person.email for person in folder_administrators(folder) if person.email})
        if not to:
            continue
        person = group[0].authenticated_by
        who = person.get_full_name() or person.get_username()
        names = ", ".join(c.name for c in group)
        lines = "\n".join(f"- {c.name}: {connection_url(c)}" for c in group)
        plural = len(group) > 1
        send_mail(
            subject=f"Reconnect {names}: authenticated by a deactivated user"
            if not plural
            else f"Reconnect {len(group)} connections in {folder.name}: "
            "authenticated by a deactivated user",
            message=(
                f"{who} was deactivated. "
                f"{'These connections' if plural else 'This connection'} in {folder.name} "
                f"{'were' if plural else 'was'} authenticated by {who} and "
                f"{'keep' if plural else 'keeps'} working for now, under their account:\n\n"
                f"{lines}\n\n"
                "As an administrator of the folder, open "
                f"{'each one' if plural else 'it'} and choose Reconnect (for a token or key: "
                f"Replace secret) to authenticate {'them' if plural else 'it'} with an active "
                "account. Reconnecting keeps the connection, its id and its triggers.\n"
            ),
            from_email=None,
            recipient_list=to,
        )
        sent += 1
    return sent
