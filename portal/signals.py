"""Keep derived state in step wherever a change comes from (pages, admin, shell)."""

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from portal.models import Role, RoleAssignment
from portal.permissions import sync_grants, sync_role
from portal.workspaces import ensure_personal_workspace


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def create_personal_workspace(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        ensure_personal_workspace(instance)


@receiver(post_save, sender=RoleAssignment)
@receiver(post_delete, sender=RoleAssignment)
def assignment_changed(sender, instance: RoleAssignment, **kwargs) -> None:
    if kwargs.get("raw"):
        return
    sync_grants(folder_id=instance.folder_id, user_id=instance.user_id, group_id=instance.group_id)


@receiver(m2m_changed, sender=Role.permissions.through)
def role_permissions_changed(sender, instance, action: str, **kwargs) -> None:
    if action in {"post_add", "post_remove", "post_clear"} and isinstance(instance, Role):
        sync_role(instance)
