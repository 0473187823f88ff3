"""Factories for test data."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from connections import vault
from connections.models import Connection, ConnectionState, Credential
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


class CredentialFactory(factory.django.DjangoModelFactory):
    """A connection's credential, sealed by the vault as the portal seals one
    (under the newest key, bound to its connection): ``secret`` is what it
    holds, a token no provider knows unless given."""

    class Meta:
        model = Credential

    connection = factory.SubFactory("tests.factories.ConnectionFactory")
    secret = factory.Dict({"token": factory.Sequence(lambda n: f"sealed-by-a-factory-{n:04d}")})

    @classmethod
    def _create(cls, model_class, *args, connection: Connection, secret: dict, **kwargs):
        return vault.store_secret(connection, secret)


class ConnectionFactory(factory.django.DjangoModelFactory):
    """A connection as the wizard leaves one: Connected, in a folder of its own
    unless given one. ``secret={...}`` seals that secret as its credential,
    ``sealed=True`` a secret of no matter; without either it has none."""

    class Meta:
        model = Connection
        skip_postgeneration_save = True

    folder = factory.SubFactory(FolderFactory)
    connector_key = "fakehub"
    auth_type = "pat"
    name = factory.Sequence(lambda n: f"Connection {n}")
    state = ConnectionState.CONNECTED

    class Params:
        # The Sandbox connector, served by the portal itself (PORTAL_SANDBOX_ENABLED).
        sandbox = factory.Trait(connector_key="sandbox")
        sealed = factory.Trait(
            credential=factory.RelatedFactory(CredentialFactory, factory_related_name="connection")
        )

    @factory.post_generation
    def secret(obj, create, extracted, **kwargs):
        if create and extracted is not None:
            CredentialFactory(connection=obj, secret=extracted)


def assign(principal, folder: Folder, role_name: str) -> RoleAssignment:
    """Give a user or a group a built-in (or other named) role on a folder."""
    role = Role.objects.get(name=role_name)
    if isinstance(principal, Group):
        return RoleAssignment.objects.create(folder=folder, role=role, group=principal)
    return RoleAssignment.objects.create(folder=folder, role=role, user=principal)
