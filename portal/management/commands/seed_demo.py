"""Demo data for `make run`: a superuser, three users with different roles,
a robot account for automations, a shared folder tree and everyone's
personal workspace. Safe to run twice."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from portal.api_keys import create_robot
from portal.models import Folder, RobotAccount, Role, RoleAssignment

DEMO_PASSWORD = "demo-portal-2026"  # noqa: S105 (demo data, printed by make run)

DEMO_USERS = [
    # username, e-mail, first name, last name, folder, role
    ("admin", "admin@example.com", "Ada", "Admin", None, None),
    ("fiona", "fiona@example.com", "Fiona", "Folder-Admin", "Shared", "Folder Administrator"),
    ("dev", "dev@example.com", "Devon", "Developer", "Finance", "Automation Developer"),
    ("user", "user@example.com", "Uma", "User", "HR", "Automation User"),
]

# Its API keys are made on the Robot accounts page (a key is shown once).
DEMO_ROBOT = "finance-robot"


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
        robot = RobotAccount.objects.filter(user__username=DEMO_ROBOT).first()
        if robot is None:
            robot = create_robot(
                name=DEMO_ROBOT,
                description="Runs the nightly finance jobs (demo).",
                actor=user_model.objects.get(username="admin"),
            )
            self.stdout.write(f"Created robot account {DEMO_ROBOT}")
        automation_user = Role.objects.get(name="Automation User")
        RoleAssignment.objects.get_or_create(
            folder=folders["Finance"], role=automation_user, user=robot.user
        )
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
