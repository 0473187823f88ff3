"""allauth adapter: sign-up by invitation, one notion of the client's address."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from portal import audit
from portal.auth.invitations import (
    SESSION_KEY,
    forget_invitation,
    pending_invitation_in_session,
)
from portal.client_ip import client_ip
from portal.models import AuditRecord, Invitation


class PortalAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.PORTAL_OPEN_SIGNUP or pending_invitation_in_session(request) is not None

    def get_client_ip(self, request: HttpRequest) -> str:
        return client_ip(request)

    def pre_authenticate(self, request: HttpRequest, **credentials) -> None:
        """Password failures are django-axes' job, counted per (account, client
        address) so nobody can lock an account for everyone. allauth's
        "login_failed" limit (counted per account alone) is therefore not spent
        on passwords; it stays on for second-factor codes, where it stops
        someone who has the password from trying TOTP codes without end."""

    def save_user(self, request: HttpRequest, user, form, commit: bool = True):
        if not commit:
            return super().save_user(request, user, form, commit=False)
        invitation_id = request.session.get(SESSION_KEY)
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=True)
            # Claim the invitation with one conditional UPDATE: of two sign-ups
            # racing through one link, exactly one claims it. The other (or one
            # whose invitation was revoked or expired while the form was open)
            # is rolled back, user and personal workspace included.
            claimed = bool(invitation_id) and bool(
                Invitation.objects.pending()
                .filter(pk=invitation_id, email__iexact=user.email)
                .update(accepted_at=timezone.now(), accepted_by=user)
            )
            if not claimed and not settings.PORTAL_OPEN_SIGNUP:
                raise PermissionDenied(
                    "This invitation has already been used, was revoked or has expired."
                )
            if claimed:
                audit.record(
                    AuditRecord.Action.INVITATION_ACCEPTED,
                    actor=user,
                    target=("invitation", invitation_id, user.email),
                )
        if invitation_id:
            forget_invitation(request)
        return user
