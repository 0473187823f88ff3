"""The built-in roles. Created by a data migration, editable in the admin."""

from django.contrib.auth.models import Permission

from portal.models import Role

BUILTIN_ROLES: dict[str, tuple[str, list[str]]] = {
    "Folder Administrator": (
        "Everything in the folder, including who has access.",
        [
            "view_connections", "use_connections", "create_connections", "edit_connections",
            "delete_connections", "view_triggers", "manage_triggers", "view_processes",
            "manage_processes", "view_jobs", "view_solutions", "author_solutions",
            "deploy_solutions", "manage_folder_access",
        ],
    ),
    "Automation Developer": (
        "Builds automations: manages connections, triggers and processes.",
        [
            "view_connections", "use_connections", "create_connections", "edit_connections",
            "delete_connections", "view_triggers", "manage_triggers", "view_processes",
            "manage_processes", "view_jobs", "view_solutions", "author_solutions",
        ],
    ),
    "Automation User": (
        "Runs automations that use the folder's connections.",
        ["view_connections", "use_connections", "view_jobs"],
    ),
    "Viewer": (
        "Sees what the folder holds, changes nothing.",
        ["view_connections", "view_triggers", "view_processes", "view_jobs", "view_solutions"],
    ),
}  # fmt: skip


def ensure_builtin_roles(**kwargs) -> None:
    """Create the built-in roles that are missing. A role that exists is left
    as an administrator may have edited it."""
    for name, (description, codenames) in BUILTIN_ROLES.items():
        role, created = Role.objects.get_or_create(
            name=name, defaults={"description": description, "is_builtin": True}
        )
        if created:
            role.permissions.set(
                Permission.objects.filter(
                    content_type__app_label="portal",
                    content_type__model="folder",
                    codename__in=codenames,
                )
            )
