"""Forms built from a connector's definition."""

from django import forms
from django.core.exceptions import ValidationError

from connections.catalog import AuthTypeSpec, ConnectorSpec, FieldSpec
from connections.validation import (
    NAME_MAX_LENGTH,
    NAME_REQUIRED,
    NAME_TOO_LONG,
    POLLING_NOT_A_NUMBER,
)


def _form_field(spec: FieldSpec) -> forms.Field:
    attrs = {"autocomplete": "off"}
    if spec.placeholder:
        attrs["placeholder"] = spec.placeholder
    if spec.type == "choice":
        return forms.ChoiceField(
            label=spec.label, required=spec.required, help_text=spec.help, choices=spec.choices
        )
    return forms.CharField(
        label=spec.label,
        required=spec.required,
        help_text=spec.help,
        max_length=spec.max_length,
        widget=forms.TextInput(attrs=attrs),
        # The same words as the spec's own check (and so as the API).
        error_messages={
            "required": f"{spec.label} is required.",
            "max_length": f"{spec.label} is longer than {spec.max_length} characters.",
        },
    )


def name_field() -> forms.CharField:
    """A connection's name, refused in the words of ``validation.clean_name``."""
    return forms.CharField(
        max_length=NAME_MAX_LENGTH,
        error_messages={"required": NAME_REQUIRED, "max_length": NAME_TOO_LONG},
    )


def _secret_field(spec) -> forms.Field:
    # render_value=False: a secret is never written back into a page.
    return forms.CharField(
        label=spec.label,
        help_text=spec.help,
        strip=True,
        error_messages={"required": f"{spec.label} is required."},
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )


class DefinitionFieldsMixin:
    """Adds the connector's fields, validated by their specs."""

    def add_definition_fields(self, connector: ConnectorSpec, auth: AuthTypeSpec) -> None:
        self.field_specs = {spec.key: spec for spec in (*connector.fields, *auth.fields)}
        for key, spec in self.field_specs.items():
            self.fields[f"field_{key}"] = _form_field(spec)

    def clean(self):
        cleaned = super().clean()
        for key, spec in getattr(self, "field_specs", {}).items():
            name = f"field_{key}"
            if name in self.errors:
                continue
            try:
                cleaned[name] = spec.clean(cleaned.get(name))
            except ValidationError as error:
                self.add_error(name, error)
        return cleaned

    def definition_values(self) -> dict[str, str]:
        return {key: self.cleaned_data.get(f"field_{key}", "") for key in self.field_specs}


class SecretFieldsMixin:
    def add_secret_fields(self, auth: AuthTypeSpec) -> None:
        self.secret_keys = [spec.key for spec in auth.secrets]
        for spec in auth.secrets:
            self.fields[f"secret_{spec.key}"] = _secret_field(spec)

    def secret_values(self) -> dict[str, str]:
        return {key: self.cleaned_data.get(f"secret_{key}", "") for key in self.secret_keys}


class ConnectForm(DefinitionFieldsMixin, SecretFieldsMixin, forms.Form):
    name = name_field()
    description = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, connector: ConnectorSpec, auth: AuthTypeSpec, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].initial = connector.name
        self.add_definition_fields(connector, auth)
        self.add_secret_fields(auth)


class EditForm(DefinitionFieldsMixin, forms.Form):
    name = name_field()
    description = forms.CharField(max_length=500, required=False)
    # Bounds are checked by validation.clean_polling_interval (the tenant-wide
    # minimum included), in the same words as through the API.
    polling_interval_seconds = forms.IntegerField(
        label="Polling interval (seconds)",
        error_messages={"required": POLLING_NOT_A_NUMBER, "invalid": POLLING_NOT_A_NUMBER},
        help_text="How often the portal checks the connection (and, later, polls its triggers).",
    )

    def __init__(self, *args, connector: ConnectorSpec, auth: AuthTypeSpec, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_definition_fields(connector, auth)


class ReplaceSecretForm(SecretFieldsMixin, forms.Form):
    def __init__(self, *args, auth: AuthTypeSpec, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_secret_fields(auth)


class OAuthForm(DefinitionFieldsMixin, forms.Form):
    """Authorization code with the portal's app (fixed scopes) or, with
    ``own_app``, the user's own app (client ID, secret, scopes)."""

    name = name_field()
    description = forms.CharField(max_length=500, required=False)

    def __init__(
        self, *args, connector: ConnectorSpec, auth: AuthTypeSpec, own_app: bool, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.fields["name"].initial = connector.name
        self.add_definition_fields(connector, auth)
        self.own_app = own_app
        if own_app:
            self.fields["client_id"] = forms.CharField(label="Client ID", max_length=255)
            self.fields["client_secret"] = forms.CharField(
                label="Client Secret",
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            )
            known = auth.oauth2.available_scopes or auth.oauth2.default_scopes
            mandatory = auth.oauth2.mandatory_scopes
            help_text = "Separated by spaces. Known scopes: " + ", ".join(known) + "."
            if mandatory:
                help_text += " Mandatory: " + ", ".join(mandatory) + "."
            self.fields["scopes"] = forms.CharField(
                label="Scopes",
                initial=" ".join(auth.oauth2.default_scopes),
                help_text=help_text,
                widget=forms.TextInput(attrs={"list": "known-scopes", "autocomplete": "off"}),
            )


class PasswordGrantForm(DefinitionFieldsMixin, forms.Form):
    name = name_field()
    description = forms.CharField(max_length=500, required=False)

    def __init__(
        self, *args, connector: ConnectorSpec, auth: AuthTypeSpec, needs_client: bool, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.fields["name"].initial = connector.name
        self.add_definition_fields(connector, auth)
        self.fields["username"] = forms.CharField(label="User name", max_length=255)
        self.fields["password"] = forms.CharField(
            label="Password",
            help_text="Exchanged once for tokens; the password itself is not kept.",
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        )
        if needs_client:
            add_client_fields(self)


class ClientCredentialsForm(DefinitionFieldsMixin, forms.Form):
    name = name_field()
    description = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, connector: ConnectorSpec, auth: AuthTypeSpec, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].initial = connector.name
        self.add_definition_fields(connector, auth)
        add_client_fields(self)


def add_client_fields(form: forms.Form) -> None:
    form.fields["client_id"] = forms.CharField(label="Client ID", max_length=255)
    form.fields["client_secret"] = forms.CharField(
        label="Client Secret",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )


class ClientSecretForm(forms.Form):
    client_secret = forms.CharField(
        label="New client secret",
        help_text="Rotated in your app registration. The connection is then reconnected.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )


def add_errors(form: forms.Form, error: ValidationError) -> None:
    """Attach a domain ValidationError to the form field it names."""
    for field, problems in error.message_dict.items():
        for name in (field, f"field_{field}", f"secret_{field}"):
            if name in form.fields:
                break
        else:
            name = None
        for problem in problems:
            form.add_error(name, problem)
