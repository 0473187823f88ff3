"""Invitation links: the token travels by e-mail; the session remembers which
invitation the visitor opened until they finish signing up."""

from django.conf import settings
from django.core.mail import send_mail
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from portal import audit
from portal.models import AuditRecord, Invitation

SESSION_KEY = "portal_invitation_id"


def invitation_for_token(token: str) -> Invitation | None:
    return Invitation.objects.pending().filter(token_digest=Invitation.digest(token)).first()


def remember_invitation(request: HttpRequest, invitation: Invitation) -> None:
    request.session[SESSION_KEY] = invitation.pk


def pending_invitation_in_session(request: HttpRequest) -> Invitation | None:
    invitation_id = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    if invitation_id is None:
        return None
    return Invitation.objects.pending().filter(pk=invitation_id).first()


def forget_invitation(request: HttpRequest) -> None:
    request.session.pop(SESSION_KEY, None)


def invitation_url(token: str) -> str:
    return settings.PORTAL_BASE_URL + reverse("invitation_accept", args=[token])


def send_invitation(*, email: str, invited_by) -> Invitation:
    """Create an invitation and e-mail its link; the token is not kept."""
    invitation, token = Invitation.issue(email=email, invited_by=invited_by)
    audit.record(
        AuditRecord.Action.INVITATION_SENT,
        actor=invited_by,
        target=("invitation", invitation.pk, email),
    )
    inviter = invited_by.get_full_name() or invited_by.get_username()
    send_mail(
        subject="You are invited to the Connections portal",
        message=(
            f"{inviter} invited you to the Connections portal.\n\n"
            f"Open this link to choose your username and password:\n{invitation_url(token)}\n\n"
            f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        ),
        from_email=None,
        recipient_list=[email],
    )
    return invitation


def revoke_invitation(invitation: Invitation, *, actor=None) -> None:
    """The link stops working: opening it says so, and nobody signs up with it."""
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record(
        AuditRecord.Action.INVITATION_REVOKED,
        actor=actor,
        target=("invitation", invitation.pk, invitation.email),
    )
