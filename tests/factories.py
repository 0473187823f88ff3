"""Factories for test data."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from portal.models import Folder, Role, RoleAssignment

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = factory.LazyAttribute(lambda u: u.username.capitalize())
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group

    name = factory.Sequence(lambda n: f"group{n}")


class FolderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Folder

    name = factory.Sequence(lambda n: f"Folder {n}")
    kind = Folder.Kind.SHARED
    parent = None


def assign(principal, folder: Folder, role_name: str) -> RoleAssignment:
    """Give a user or a group a built-in (or other named) role on a folder."""
    role = Role.objects.get(name=role_name)
    if isinstance(principal, Group):
        return RoleAssignment.objects.create(folder=folder, role=role, group=principal)
    return RoleAssignment.objects.create(folder=folder, role=role, user=principal)
