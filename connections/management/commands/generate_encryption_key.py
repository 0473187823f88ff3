"""Print a new key for PORTAL_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand

from connections import vault


class Command(BaseCommand):
    help = (
        "Print a new random key for PORTAL_ENCRYPTION_KEYS (32 bytes, url-safe base64). "
        "To rotate, put it first in the list, keep the old keys after it, and run "
        "rotate_encryption_keys."
    )
    # It must work while the keys are missing or broken: that is when it is needed.
    requires_system_checks = []

    def handle(self, *args, **options) -> None:
        self.stdout.write(vault.generate_key())
