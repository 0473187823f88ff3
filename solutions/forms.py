"""The Solutions pages' forms: a new solution, a component's properties
with their locks, Build and publish, and a package file to upload."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from connections.catalog import get_catalog
from connections.forms import _form_field, add_errors
from connections.transfer.forms import MAX_UPLOAD_BYTES
from portal.folder_tree import folder_name_paths
from portal.models import Folder
from solutions.authoring import DESCRIPTION_MAX, LABELS, NAME_MAX, PROPERTIES, Kind, object_of
from solutions.models import Component
from solutions.publishing import NOTES_MAX


def folder_choices(folders: list[Folder], empty_label: str) -> list[tuple[str, str]]:
    """Folders by their path from the top (two queries)."""
    paths = folder_name_paths(folders)
    return [("", empty_label), *((str(f.pk), paths[f.pk]) for f in folders)]


class _FolderChoice(forms.Form):
    def __init__(self, *args, folders: list[Folder], **kwargs):
        super().__init__(*args, **kwargs)
        self.folders = {str(folder.pk): folder for folder in folders}
        self.fields["folder"].choices = folder_choices(folders, "Choose a folder")

    def chosen_folder(self) -> Folder | None:
        return self.folders.get(self.cleaned_data.get("folder") or "")


class NewSolutionForm(_FolderChoice):
    name = forms.CharField(label="Solution name", max_length=NAME_MAX)
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    folder = forms.ChoiceField(
        label="Source folder",
        help_text="Its connections, event triggers and processes, and those of the folders "
        "below it, can be picked as components. Folders where you have Solutions - Author.",
        error_messages={
            "required": "Choose the source folder.",
            "invalid_choice": "Choose one of the folders where you may author solutions.",
        },
    )


class PublishForm(forms.Form):
    notes = forms.CharField(
        label="Version notes",
        required=False,
        max_length=NOTES_MAX,
        help_text="What changed in this version.",
    )


class UploadForm(_FolderChoice):
    package = forms.FileField(
        label="Package file",
        help_text="A JSON package file downloaded from a solution's versions "
        f"({MAX_UPLOAD_BYTES // 1024} KB at most).",
        widget=forms.ClearableFileInput(attrs={"accept": "application/json,.json"}),
    )
    folder = forms.ChoiceField(
        label="Keep a new solution in",
        required=False,
        help_text="When no solution here has the package's name, one is made in this folder; "
        "otherwise the package becomes that solution's next version.",
    )

    def clean_package(self):
        upload = self.cleaned_data["package"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValidationError(
                f"The file is larger than {MAX_UPLOAD_BYTES // 1024} KB: is it a package file?"
            )
        return upload.read()


class ComponentForm(forms.Form):
    """A component's properties (the reference's labels) and which are
    locked at deployment. Validated by ``authoring.edit_component``."""

    def __init__(self, *args, component: Component, **kwargs):
        super().__init__(*args, **kwargs)
        self.component = component
        labels = LABELS[component.kind]
        props = component.properties
        obj = object_of(component)
        initial = {}
        if component.kind in (Kind.CONNECTION, Kind.PROCESS):
            self.fields["name"] = forms.CharField(label=labels["name"], max_length=NAME_MAX)
            self.fields["description"] = forms.CharField(
                label=labels["description"],
                required=False,
                max_length=DESCRIPTION_MAX,
                widget=forms.Textarea(attrs={"rows": 2}),
            )
            initial |= {"name": props.get("name"), "description": props.get("description")}
        if component.kind == Kind.CONNECTION:
            connector = get_catalog().get(obj.connector_key) if obj else None
            offered = connector.auth_types if connector else ()
            self.fields["auth_type"] = forms.ChoiceField(
                label=labels["auth_type"],
                choices=[(auth.type.value, auth.display_label) for auth in offered],
                help_text="How the deployed connection authenticates (its credential never "
                "travels with the solution).",
            )
            initial["auth_type"] = props.get("auth_type")
        elif component.kind == Kind.TRIGGER:
            connector = get_catalog().get(obj.connection.connector_key) if obj else None
            event = connector.event(obj.event_key) if connector else None
            for spec in event.filters if event else ():
                self.fields[f"field_{spec.key}"] = _form_field(spec)
                initial[f"field_{spec.key}"] = (props.get("filters") or {}).get(spec.key, "")
            self.fields["enabled"] = forms.BooleanField(label=labels["enabled"], required=False)
            initial["enabled"] = props.get("enabled", True)
            if event is not None and event.can_include_existing:
                self.fields["include_existing"] = forms.BooleanField(
                    label=labels["include_existing"],
                    required=False,
                    help_text="Off: the first poll starts from now and fires only what comes "
                    "after.",
                )
                initial["include_existing"] = props.get("include_existing", False)
        elif component.kind == Kind.PROCESS:
            self.fields["webhook_url"] = forms.CharField(
                label=labels["webhook_url"],
                required=False,
                max_length=500,
                widget=forms.URLInput(),
            )
            self.fields["job_queue"] = forms.BooleanField(label=labels["job_queue"], required=False)
            initial |= {
                "webhook_url": props.get("webhook_url"),
                "job_queue": props.get("job_queue"),
            }
        self.fields["locked"] = forms.MultipleChoiceField(
            label="Locked at deployment",
            required=False,
            choices=[(name, f"Lock {labels[name]}") for name in PROPERTIES[component.kind]],
            widget=forms.CheckboxSelectMultiple,
            help_text="A locked property cannot be changed when the solution is deployed.",
        )
        initial["locked"] = list(component.locked)
        if not self.is_bound:
            self.initial = initial

    def property_fields(self):
        return [self[name] for name in self.fields if name != "locked"]

    def properties(self) -> dict:
        data = self.cleaned_data
        if self.component.kind == Kind.TRIGGER:
            values = {
                "filters": {
                    name.removeprefix("field_"): value
                    for name, value in data.items()
                    if name.startswith("field_")
                },
                "enabled": data.get("enabled", False),
            }
            if "include_existing" in self.fields:
                values["include_existing"] = data.get("include_existing", False)
            return values
        return {name: data[name] for name in self.fields if name in PROPERTIES[self.component.kind]}

    def refuse(self, error: ValidationError) -> None:
        """Attach the domain's refusal to the field it names."""
        if not hasattr(error, "error_dict"):
            for message in error.messages:
                self.add_error(None, message)
            return
        renamed = {
            key.removeprefix("filters."): messages for key, messages in error.message_dict.items()
        }
        add_errors(self, ValidationError(renamed))
