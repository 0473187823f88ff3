from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from connections.catalog import get_catalog
from portal import readiness


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Connections"

    def ready(self) -> None:
        # Here, not at the top: these import models, not loaded yet when apps.py is.
        from connections import checks, signals, vault

        checks.register()
        # /readyz fails while sealed rows need a key that is not configured
        # (what the connections.E004 check reports), before traffic fails on them.
        readiness.register("encryption_keys", vault.missing_keys)
        # A deactivated authenticator: their shared connections' folder admins are told.
        signals.connect()
        # Load and validate the connector catalog now: a broken definition
        # stops start-up with a message naming the file, field and problem.
        get_catalog()
        if not settings.DEBUG:
            # In production an unusable key stops start-up (gunicorn runs no
            # system checks). With PORTAL_DEBUG on, connections.E001-E003 report it.
            problems = vault.find_key_problems(getattr(settings, vault.SETTING, None))
            if problems:
                raise ImproperlyConfigured(
                    " ".join(p.message for p in problems) + " " + vault.GENERATE_HINT
                )
