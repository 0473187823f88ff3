"""allauth adapter: sign-up by invitation, one notion of the client's address."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from portal.auth.invitations import forget_invitation, pending_invitation_in_session
from portal.client_ip import client_ip
from portal.models import Invitation


class PortalAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.PORTAL_OPEN_SIGNUP or pending_invitation_in_session(request) is not None

    def get_client_ip(self, request: HttpRequest) -> str:
        return client_ip(request)

    def save_user(self, request: HttpRequest, user, form, commit: bool = True):
        invitation = pending_invitation_in_session(request)
        user = super().save_user(request, user, form, commit=commit)
        if invitation is not None and commit:
            Invitation.objects.pending().filter(pk=invitation.pk).update(
                accepted_at=timezone.now(), accepted_by=user
            )
            forget_invitation(request)
        return user
