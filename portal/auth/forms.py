"""Sign-up form: with an invitation, the e-mail address is the invited one."""

from allauth.account.forms import SignupForm
from allauth.core import context
from django import forms

from portal.auth.invitations import pending_invitation_in_session


class PortalSignupForm(SignupForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = context.request
        self.invitation = pending_invitation_in_session(request) if request else None
        if self.invitation is not None:
            self.fields["email"].initial = self.invitation.email

    def clean_email(self):
        email = super().clean_email()
        if self.invitation is not None and email.casefold() != self.invitation.email.casefold():
            raise forms.ValidationError(
                f"This invitation is for {self.invitation.email}; sign up with that address."
            )
        return email
