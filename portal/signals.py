"""Keep derived state in step wherever a change comes from (pages, admin, shell)."""

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from portal import audit
from portal.auth.lockout import attempted_login
from portal.client_ip import client_ip
from portal.models import AuditRecord, Role, RoleAssignment
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


@receiver(user_login_failed)
def sign_in_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    """A failed sign-in, under the account tried (never the password)."""
    login = attempted_login(request, credentials) or ""
    audit.record(
        AuditRecord.Action.SIGN_IN_FAILED,
        target=("user", "", login[:150]),
        ip=(client_ip(request) or None) if request is not None else None,
    )


@receiver(user_locked_out)
def locked_out(sender, request, username: str, ip_address: str, **kwargs) -> None:
    """A sign-in refused because the account is locked out after failures."""
    audit.record(
        AuditRecord.Action.LOCKED_OUT,
        target=("user", "", (username or "")[:150]),
        ip=ip_address or None,
        detail=f"Locked out after {settings.AXES_FAILURE_LIMIT} failed sign-ins.",
    )
