"""Sibling folder names are unique whatever their case: checked by the
pages (``actions.check_folder_place``) and held by the database, so two
requests at once cannot make "Finance" and "finance" side by side. The
migration that made the constraints renames twins made before."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from portal import actions
from portal.models import Folder
from tests.at_once import at_once, needs_a_server_database
from tests.factories import FolderFactory

MIGRATION = "portal.migrations.0010_folder_names_unique_whatever_the_case"


@pytest.mark.django_db
@pytest.mark.parametrize("under_a_parent", [False, True])
def test_the_database_refuses_a_sibling_named_alike(under_a_parent):
    parent = FolderFactory(name="Operations") if under_a_parent else None
    Folder.objects.create(name="Finance", parent=parent)
    with pytest.raises(IntegrityError), transaction.atomic():
        Folder.objects.create(name="FINANCE", parent=parent)
    # Elsewhere in the tree the name is free.
    Folder.objects.create(name="finance", parent=FolderFactory(name="Elsewhere"))


@pytest.mark.django_db(transaction=True)
def test_two_requests_for_names_differing_by_case_make_one_folder(make_user):
    needs_a_server_database()
    admin = make_user("root-admin", is_superuser=True)
    names = iter(["Finance", "finance", "FINANCE", "FiNaNcE"])
    made, refused = at_once(
        lambda: actions.create_folder(name=next(names), parent=None, actor=admin)
    )
    assert len(made) == 1 and Folder.objects.filter(name__iexact="finance").count() == 1
    assert all(isinstance(error, ValidationError) for error in refused), refused
    assert all("already exists" in str(error) for error in refused)


@pytest.mark.django_db
def test_the_migration_renames_twins_made_before(monkeypatch):
    """Run on rows as they could be before it (the model's constraints are
    today's, so the rows are written past them by a stand-in manager):
    the oldest keeps its name, the others get a number that is free."""
    migration = import_module(MIGRATION)
    operations = FolderFactory(name="Operations")
    rows = [
        (1, None, "shared", "Finance"),
        (2, None, "personal", "Finance"),  # a workspace: nobody's sibling
        (3, None, "shared", "finance"),
        (4, None, "shared", "Finance (2)"),
        (5, operations.pk, "shared", "HR"),
        (6, operations.pk, "shared", "hr"),
        (7, None, "shared", "hr"),
    ]
    renamed: dict[int, str] = {}

    class Rows:
        def __init__(self, pk=None):
            self.pk = pk

        def order_by(self, *fields):
            return self

        def values_list(self, *fields):
            return rows

        def filter(self, pk):
            return Rows(pk)

        def update(self, name):
            renamed[self.pk] = name

    class Model:
        _meta = Folder._meta
        objects = Rows()

    monkeypatch.setattr(apps, "get_model", lambda app, model: Model)
    migration.rename_case_only_twins(apps, None)
    assert renamed == {3: "finance (3)", 6: "hr (2)"}
