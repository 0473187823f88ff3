from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import signals
        from portal.roles import ensure_builtin_roles

        post_migrate.connect(ensure_builtin_roles, sender=self)
        assert signals  # receivers connect on import
