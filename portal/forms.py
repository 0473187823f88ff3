from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import Q

from portal import api_keys
from portal.folder_tree import folder_name_paths
from portal.models import AuditRecord, Folder, Invitation, Role, TenantSettings
from portal.permissions import visible_folders


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
        fields = ["allow_shared_connection_creation", "min_polling_interval_seconds", "read_only"]

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


class ApiKeyForm(forms.Form):
    """A new API key for ``owner``. The rules are ``portal.api_keys``'s: the
    form asks each of its checks, so that every field's error shows at once
    (``issue`` asks them again and has the last word)."""

    name = forms.CharField(
        strip=True,
        error_messages={"required": "Give the key a name, e.g. the automation that uses it."},
        help_text="What uses the key, e.g. the automation or the machine it runs on.",
        widget=forms.TextInput(attrs={"maxlength": 80, "autocomplete": "off"}),
    )
    days = forms.IntegerField(
        label="Lifetime (days)", error_messages={"required": "Enter the key's lifetime in days."}
    )
    folder = forms.TypedChoiceField(
        label="Limit to folder",
        required=False,
        coerce=int,
        empty_value=None,
        help_text="The key then acts only in this folder and the folders below it.",
    )

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        longest = settings.PORTAL_API_KEY_MAX_DAYS
        self.fields["days"].initial = settings.PORTAL_API_KEY_DAYS
        self.fields["days"].widget.attrs.update({"min": 1, "max": longest})
        self.fields["days"].help_text = f"From 1 to {longest} days."
        # The folders the key's user can see, labelled by their path: two queries.
        self._folders = {
            folder.pk: folder
            for folder in visible_folders(owner).only("pk", "name", "kind", "path", "owner_id")
        }
        labels = folder_name_paths(list(self._folders.values()))
        in_order = sorted(
            self._folders.values(),
            key=lambda folder: (not folder.is_personal, labels[folder.pk].casefold()),
        )
        self.fields["folder"].choices = [
            ("", "No limit"),
            *((folder.pk, labels[folder.pk]) for folder in in_order),
        ]

    def clean_folder(self) -> Folder | None:
        folder_id = self.cleaned_data["folder"]
        return None if folder_id is None else self._folders[folder_id]

    def clean(self):
        cleaned = super().clean()
        checks = {
            "name": lambda: api_keys.clean_key_name(self.owner, cleaned["name"]),
            "days": lambda: api_keys.clean_expiry(cleaned["days"]),
            "folder": lambda: api_keys.clean_scope(self.owner, cleaned["folder"]),
        }
        for field, check in checks.items():
            if field in cleaned:
                try:
                    check()
                except ValidationError as error:
                    self.add_error(None, error)
        return cleaned


class RobotAccountForm(forms.Form):
    """A new robot account; ``portal.api_keys.create_robot`` validates the name."""

    name = forms.CharField(
        strip=True,
        error_messages={"required": "Give the robot account a name."},
        help_text="Its username: lower-case letters, digits, dots, dashes or underscores.",
        widget=forms.TextInput(attrs={"maxlength": 40, "autocomplete": "off"}),
    )
    description = forms.CharField(
        required=False,
        strip=True,
        max_length=500,
        help_text="What it runs, and who looks after it.",
    )


class AuditFilterForm(forms.Form):
    """The audit log's filters. ``folders``: those the user may filter by
    (the folders whose records they may read)."""

    action = forms.ChoiceField(
        required=False, choices=[("", "All actions"), *AuditRecord.Action.choices]
    )
    q = forms.CharField(required=False, strip=True, max_length=200)
    folder = forms.ModelChoiceField(
        queryset=Folder.objects.none(),
        required=False,
        empty_label="All folders",
        help_text="And the folders below it.",
    )
    connection = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    actor = forms.CharField(required=False, strip=True, max_length=150, label="User")
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, folders=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if folders is not None:
            self.fields["folder"].queryset = folders.order_by("path")

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end of the range is before its start.")
        return data


TOP_LEVEL = "top"


class MoveFolderForm(forms.Form):
    """Where to move a folder: ``TOP_LEVEL`` or the id of one of
    ``destinations`` (the shared folders the user may manage). The domain
    (``actions.move_folder``) says why a destination is wrong; this form only
    turns the choice into a folder."""

    parent = forms.CharField(
        label="Move to", error_messages={"required": "Choose where to move the folder."}
    )

    def __init__(self, *args, destinations, **kwargs):
        super().__init__(*args, **kwargs)
        self.destinations = destinations

    def clean_parent(self) -> Folder | None:
        value = self.cleaned_data["parent"]
        if value == TOP_LEVEL:
            return None
        try:
            return self.destinations.get(pk=int(value))
        except (ValueError, Folder.DoesNotExist):
            raise forms.ValidationError("Choose a folder you may manage.") from None


class DeleteFolderForm(forms.Form):
    confirm = forms.BooleanField(
        label="Confirm",
        error_messages={
            "required": "Tick the box to confirm: the folder is deleted with everything in it."
        },
    )
