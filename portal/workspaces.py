"""Personal workspaces: exactly one per user, created with the user."""

from django.db import IntegrityError, transaction

from portal.models import Folder


def workspace_name(user) -> str:
    full_name = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
    return full_name or user.get_username()


def ensure_personal_workspace(user) -> Folder:
    """Return the user's workspace, creating it if it does not exist yet.

    Safe to call twice, also concurrently: the one-to-one owner column
    decides, and the loser reads the winner's row.
    """
    existing = Folder.objects.filter(owner=user).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return Folder.objects.create(
                name=workspace_name(user), kind=Folder.Kind.PERSONAL, owner=user
            )
    except IntegrityError:
        return Folder.objects.get(owner=user)
