from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q

from portal.models import Invitation, Role, TenantSettings


class FolderForm(forms.Form):
    name = forms.CharField(max_length=120, strip=True)
    description = forms.CharField(max_length=500, required=False, strip=True)


class AssignmentForm(forms.Form):
    user = forms.CharField(
        label="User",
        required=False,
        help_text="Username or e-mail address.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    group = forms.ModelChoiceField(
        queryset=Group.objects.order_by("name"), required=False, empty_label="(no group)"
    )
    role = forms.ModelChoiceField(queryset=Role.objects.all(), empty_label=None)

    def clean_user(self):
        login = self.cleaned_data["user"].strip()
        if not login:
            return None
        users = get_user_model().objects.filter(
            Q(username__iexact=login) | Q(email__iexact=login), is_active=True
        )
        matches = list(users[:2])
        if not matches:
            raise forms.ValidationError(f"No active user with the username or e-mail {login!r}.")
        if len(matches) > 1:
            raise forms.ValidationError(f"{login!r} matches several users; use the username.")
        return matches[0]

    def clean(self):
        cleaned = super().clean()
        if not self.errors and (cleaned.get("user") is None) == (cleaned.get("group") is None):
            raise forms.ValidationError("Choose either a user or a group, not both.")
        return cleaned


class GovernanceForm(forms.ModelForm):
    class Meta:
        model = TenantSettings
        fields = ["allow_shared_connection_creation", "min_polling_interval_seconds"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left empty, the minimum stays as it is.
        self.fields["min_polling_interval_seconds"].required = False


class InvitationForm(forms.Form):
    email = forms.EmailField(label="E-mail address")

    def clean_email(self):
        email = self.cleaned_data["email"].strip()
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(f"{email} already has an account.")
        if Invitation.objects.pending().filter(email__iexact=email).exists():
            raise forms.ValidationError(
                f"{email} already has a pending invitation; revoke it to send a new one."
            )
        return email
