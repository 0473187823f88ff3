"""Bring a transfer document in: the plan, then all of it or nothing."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from connections.transfer.format import DocumentRefused, parse
from connections.transfer.import_ import ImportRefused, folder_at, import_connections
from portal.models import Folder


class Command(BaseCommand):
    help = (
        "Import connection definitions from a file made by export_connections: connections "
        "are created Not yet connected, to be authenticated (docs/transfer.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help='The JSON document ("-" for standard input).')
        parser.add_argument(
            "--folder", help='Import under this shared folder, e.g. "Imports/Staging".'
        )
        parser.add_argument("--dry-run", action="store_true", help="Print the plan; write nothing.")

    def handle(self, *args, file: str, folder: str | None, dry_run: bool, **options) -> None:
        try:
            raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from None
        try:
            under = folder_at(folder) if folder else None
            document = parse(raw)
            imported = import_connections(document, under=under, dry_run=dry_run)
        except Folder.DoesNotExist as error:
            raise CommandError(str(error)) from None
        except DocumentRefused as error:
            raise CommandError(
                "The file was refused, nothing was imported:\n  " + "\n  ".join(error.problems)
            ) from None
        except ImportRefused as error:
            self.stdout.write("\n".join(error.plan.lines()))
            raise CommandError(
                "Refused, nothing was imported:\n  " + "\n  ".join(error.plan.problems)
            ) from None
        plan = imported.plan
        self.stdout.write("\n".join(plan.lines()))
        if dry_run:
            self.stdout.write(f"Dry run: {plan.summary()} Nothing was written.")
            return
        self.stdout.write(plan.summary(done=True))
        if imported.to_authenticate:
            self.stdout.write("Still to authenticate (Not yet connected; triggers paused):")
            for connection in imported.to_authenticate:
                url = reverse("connection_detail", args=[connection.folder_id, connection.pk])
                self.stdout.write(f"  {connection.name}: {url}")
        if imported.signing_secrets:
            # Never the secrets themselves: a command's output ends up in logs.
            self.stdout.write(
                "Processes with a new webhook signing secret: Replace signing secret on each "
                "one's page shows one, once, to give its receiver:"
            )
            for process, _ in imported.signing_secrets:
                url = reverse("process_replace_secret", args=[process.folder_id, process.pk])
                self.stdout.write(f"  {process.name} ({process.webhook_url}): {url}")
