"""Demo data for `make run`: a superuser, three users with different roles,
a shared folder tree and everyone's personal workspace. Safe to run twice."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from portal.models import Folder, Role, RoleAssignment

DEMO_PASSWORD = "demo-portal-2026"  # noqa: S105 (demo data, printed by make run)

DEMO_USERS = [
    # username, e-mail, first name, last name, folder, role
    ("admin", "admin@example.com", "Ada", "Admin", None, None),
    ("fiona", "fiona@example.com", "Fiona", "Folder-Admin", "Shared", "Folder Administrator"),
    ("dev", "dev@example.com", "Devon", "Developer", "Finance", "Automation Developer"),
    ("user", "user@example.com", "Uma", "User", "HR", "Automation User"),
]


class Command(BaseCommand):
    help = "Load the demo users and folders (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        user_model = get_user_model()
        shared, _ = Folder.objects.get_or_create(name="Shared", parent=None, kind="shared")
        folders = {"Shared": shared}
        for name in ("Finance", "HR"):
            folders[name], _ = Folder.objects.get_or_create(name=name, parent=shared)
        Folder.objects.get_or_create(name="Payroll", parent=folders["HR"])

        for username, email, first, last, folder_name, role_name in DEMO_USERS:
            user = user_model.objects.filter(username=username).first()
            if user is None:
                user = user_model(username=username, email=email, first_name=first, last_name=last)
                user.set_password(DEMO_PASSWORD)
                user.is_staff = user.is_superuser = username == "admin"
                user.save()
                self.stdout.write(f"Created user {username}")
            if folder_name:
                RoleAssignment.objects.get_or_create(
                    folder=folders[folder_name], role=Role.objects.get(name=role_name), user=user
                )
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
