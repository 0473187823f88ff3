"""Write the connection definitions of the shared folders as a transfer document."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from connections.transfer.export import export_connections
from connections.transfer.import_ import folder_at
from portal.models import Folder


class Command(BaseCommand):
    help = (
        "Export connection definitions (never credentials), with their processes and "
        "triggers, as JSON (docs/transfer.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--folder", help='Only this shared folder and those below it, e.g. "Finance/Payables".'
        )
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args, folder: str | None, output: str | None, **options) -> None:
        try:
            scope = folder_at(folder) if folder else None
        except Folder.DoesNotExist as error:
            raise CommandError(str(error)) from None
        text = export_connections(folder=scope)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {output}.")
        else:
            self.stdout.write(text, ending="")
