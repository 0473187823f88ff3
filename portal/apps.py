from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate

from portal.checks import check_celery_visibility_timeout


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        # Here, not at the top: these import models, not loaded yet when apps.py is.
        from portal import signals
        from portal.permissions import clear_permission_cache
        from portal.roles import ensure_builtin_roles

        post_migrate.connect(ensure_builtin_roles, sender=self)
        # Permission rows are made (and, after flush, made again) by migrate.
        post_migrate.connect(clear_permission_cache, dispatch_uid="portal-permission-cache")
        assert signals  # receivers connect on import
        checks.register(check_celery_visibility_timeout, "celery")
