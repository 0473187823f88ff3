"""The Transfer tab's two forms: which folders to download, and a file to upload."""

from __future__ import annotations

from django import forms

from portal.folder_tree import folder_name_paths
from portal.models import Folder

# An uploaded document is kept in the session between the plan and Confirm
# import: no larger than this.
MAX_UPLOAD_BYTES = 1024 * 1024


def shared_folder_choices(empty_label: str) -> list[tuple[str, str]]:
    """Every shared folder by its path from the top, in tree order (two queries)."""
    folders = list(Folder.objects.shared().order_by("path"))
    paths = folder_name_paths(folders)
    return [("", empty_label), *((str(f.pk), paths[f.pk]) for f in folders)]


class _FolderChoice(forms.Form):
    def chosen_folder(self, name: str) -> Folder | None:
        pk = self.cleaned_data.get(name)
        return Folder.objects.shared().get(pk=int(pk)) if pk else None


class ExportForm(_FolderChoice):
    folder = forms.ChoiceField(
        label="Folders",
        required=False,
        help_text="One folder with the folders below it, or every shared folder.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["folder"].choices = shared_folder_choices("All shared folders")


class UploadForm(_FolderChoice):
    document = forms.FileField(
        label="Transfer file",
        help_text="A JSON file made by Download here or by manage.py export_connections "
        f"({MAX_UPLOAD_BYTES // 1024} KB at most).",
        widget=forms.ClearableFileInput(attrs={"accept": "application/json,.json"}),
    )
    under = forms.ChoiceField(
        label="Import under",
        required=False,
        help_text="The file's folders are created (when missing) below this one.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["under"].choices = shared_folder_choices("The top level")

    def clean_document(self):
        upload = self.cleaned_data["document"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is larger than {MAX_UPLOAD_BYTES // 1024} KB: export one folder at a "
                "time, or use manage.py import_connections."
            )
        return upload.read()
