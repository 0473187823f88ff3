"""Continuity when people leave: when the user who authenticated a shared
connection is deactivated, the connection keeps working under their grant,
shows "authenticated by a deactivated user", and the administrators of its
folder are told once to reconnect it under an active account."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save, pre_save

from connections import notifications
from connections.models import Connection, ConnectionEvent
from portal.models import Folder

WAS_ACTIVE = "_connections_was_active"


def _remember_was_active(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """Before a save that may deactivate the user, note whether they were active."""
    setattr(instance, WAS_ACTIVE, None)
    if raw or instance.pk is None or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    was = sender._default_manager.filter(pk=instance.pk).values_list("is_active", flat=True)
    setattr(instance, WAS_ACTIVE, was.first())


def _deactivated(sender, instance, created=False, raw=False, **kwargs) -> None:
    was_active = getattr(instance, WAS_ACTIVE, None)
    setattr(instance, WAS_ACTIVE, None)
    if raw or created or instance.is_active or not was_active:
        return
    authenticator_deactivated(instance)


def authenticator_deactivated(user) -> list[Connection]:
    """Mark the user's shared connections in their history and tell each
    folder's administrators once (after commit). Nothing else changes: the
    connections keep working and keep their triggers."""
    connections = list(
        Connection.objects.filter(authenticated_by=user, folder__kind=Folder.Kind.SHARED)
        .select_related("folder", "authenticated_by")
        .order_by("folder_id", "name")
    )
    if not connections:
        return []
    who = user.get_username()
    ConnectionEvent.objects.bulk_create(
        ConnectionEvent(
            connection=connection,
            kind=ConnectionEvent.Kind.AUTHENTICATOR_LEFT,
            detail=f"{who}, who authenticated this connection, was deactivated. "
            "It keeps working; a folder administrator should reconnect it.",
        )
        for connection in connections
    )

    def tell() -> None:
        notifications.authenticator_deactivated(connections)

    transaction.on_commit(tell)
    return connections


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(
        _remember_was_active, sender=user_model, dispatch_uid="connections_user_was_active"
    )
    post_save.connect(_deactivated, sender=user_model, dispatch_uid="connections_user_deactivated")
