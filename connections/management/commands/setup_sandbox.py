"""Register the portal's own app on the Sandbox authorization server (once;
its redirect URI follows PORTAL_BASE_URL). Run by `make run`."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connections.sandbox_provider import callback_url, ensure_portal_app


class Command(BaseCommand):
    help = "Set up the Sandbox OAuth 2.0 provider and the portal's app for it."

    def handle(self, *args, **options) -> None:
        if not settings.PORTAL_SANDBOX_ENABLED:
            raise CommandError("The Sandbox is off: set PORTAL_SANDBOX_ENABLED=1.")
        ensure_portal_app()
        self.stdout.write(f"Sandbox OAuth app ready; redirect URI {callback_url()}")
