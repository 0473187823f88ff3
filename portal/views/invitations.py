"""Opening an invitation link leads to sign-up with the invited address."""

from allauth.account.adapter import get_adapter
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from portal.auth.invitations import invitation_for_token, remember_invitation


@require_GET
def accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_for_token(token)
    if invitation is None:
        return render(request, "account/invitation_invalid.html", status=404)
    if request.user.is_authenticated:
        return redirect("home")
    remember_invitation(request, invitation)
    # The link reached this address, so the address is proven.
    get_adapter(request).stash_verified_email(request, invitation.email)
    return redirect("account_signup")
