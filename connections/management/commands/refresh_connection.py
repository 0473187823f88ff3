"""Refresh one connection's token now, in the foreground (support)."""

from django.core.management.base import BaseCommand, CommandError

from connections import oauth, refresh
from connections.models import Connection


class Command(BaseCommand):
    help = "Refresh a connection's OAuth 2.0 token now (single-flight, like the workers)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("connection_id", type=int)
        parser.add_argument(
            "--if-due", action="store_true", help="Only when it expires within the lead time."
        )

    def handle(self, *args, connection_id: int, if_due: bool, **options) -> None:
        try:
            secret = refresh.refresh_connection(connection_id, force=not if_due)
        except Connection.DoesNotExist:
            raise CommandError(f"No connection {connection_id}.") from None
        except refresh.RefreshError as error:
            raise CommandError(str(error)) from None
        expiry = oauth.expiry_of(secret)
        self.stdout.write(
            f"Connection {connection_id}: token valid until {expiry:%Y-%m-%d %H:%M:%S} UTC."
            if expiry
            else f"Connection {connection_id}: token has no expiry."
        )
