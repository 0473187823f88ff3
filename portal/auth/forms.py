"""allauth forms: with an invitation, the e-mail address is the invited one;
the login page offers sign-up only when sign-up is open to this visitor."""

from allauth.account.adapter import get_adapter
from allauth.account.forms import LoginForm, SignupForm
from allauth.core import context
from django import forms

from portal.auth.invitations import pending_invitation_in_session


class PortalLoginForm(LoginForm):
    @property
    def signup_open(self) -> bool:
        request = self.request or context.request
        return request is not None and get_adapter(request).is_open_for_signup(request)


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
