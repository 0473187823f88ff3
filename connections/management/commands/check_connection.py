"""Run one connection's health check now, in the foreground (support)."""

from django.core.management.base import BaseCommand, CommandError

from connections.actions import check
from connections.catalog import ConnectorMissing
from connections.models import Connection


class Command(BaseCommand):
    help = "Run a connection's health check now and record it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("connection_id", type=int)

    def handle(self, *args, connection_id: int, **options) -> None:
        connection = Connection.objects.filter(pk=connection_id).first()
        if connection is None:
            raise CommandError(f"No connection {connection_id}.")
        if not connection.is_enabled:
            raise CommandError(f"{connection.name} is disabled: it is never checked.")
        try:
            result = check.check_connection(connection=connection)
        except (check.ConnectError, ConnectorMissing) as error:
            raise CommandError(str(error)) from None
        if not result.ok:
            raise CommandError(f"{connection.name}: {result.error}")
        who = f" as {result.identity}" if result.identity else ""
        self.stdout.write(f"{connection.name}: OK{who} in {result.latency_ms} ms.")
