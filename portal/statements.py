"""SQL written once from the models' own names, for the few hot paths where
composing a statement through the ORM costs more than running it: handing
out credentials and refreshing a token.

Only table and column names from the models and ``%s`` placeholders go
into the text, so no value can change a statement (ruff's S608 is moot
wherever these are used). Queries still run through Django's cursor: they
are counted, logged in debug and wrapped like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from django.db import connection as db
from django.db.models import Model, signals
from django.db.models.base import ModelState


def table(model: type[Model]) -> str:
    return db.ops.quote_name(model._meta.db_table)


def column(model: type[Model], name: str) -> str:
    return db.ops.quote_name(model._meta.get_field(name).column)


def execute(sql: str, params: Sequence) -> int:
    """Run one statement; the number of rows it touched."""
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def id_list(expr: str) -> str:
    """An aggregate of integer ``expr`` into one text value, "3,5,8" (NULL
    over no rows), on either database: one row where a join would give a
    row per id. ``ids`` reads it."""
    if db.vendor == "postgresql":
        return f"string_agg(CAST({expr} AS text), ',')"
    return f"group_concat({expr}, ',')"


def ids(value: str | None) -> list[int]:
    """The ids of an ``id_list`` column."""
    return [int(part) for part in value.split(",")] if value else []


class Columns:
    """Some fields of a model (``names``; None: every column), selected under
    a table alias and turned back into a model instance (the other fields
    deferred), with the converters the ORM itself would apply to each column
    on this database."""

    def __init__(self, model: type[Model], names: Sequence[str] | None, alias: str):
        self.model = model
        self.alias = alias
        concrete = model._meta.concrete_fields
        # In the model's order, which ``Model.from_db`` expects.
        wanted = set(concrete) if names is None else {model._meta.get_field(n) for n in names}
        self.fields = tuple(field for field in concrete if field in wanted)
        if len(self.fields) != len(wanted):
            raise ValueError(f"Not all of {names} are columns of {model.__name__}.")
        self.attnames = tuple(field.attname for field in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def select(self) -> str:
        """``alias.column, ...`` for a SELECT list."""
        return ", ".join(f"{self.alias}.{db.ops.quote_name(field.column)}" for field in self.fields)

    @cached_property
    def _converters(self) -> tuple[tuple, ...]:
        converters = []
        for field in self.fields:
            col = field.cached_col
            converters.append(
                tuple(db.ops.get_db_converters(col)) + tuple(col.get_db_converters(db))
            )
        return tuple(converters)

    @cached_property
    def _plain(self) -> bool:
        """No one listens to the model's ``pre_init`` / ``post_init``: an
        instance can be made without running ``Model.__init__``."""
        return not (
            signals.pre_init.has_listeners(self.model)
            or signals.post_init.has_listeners(self.model)
        )

    def build(self, values: Sequence) -> Model:
        """The instance for this slice of a row, as the ORM would load it."""
        converted = []
        for value, converters, field in zip(values, self._converters, self.fields, strict=True):
            for converter in converters:
                value = converter(value, field.cached_col, db)
            converted.append(value)
        if not self._plain:
            return self.model.from_db(db.alias, self.attnames, converted)
        # What ``from_db`` makes, without walking every field of the model
        # twice: a field not loaded is absent from ``__dict__``, which is how
        # the ORM defers it.
        instance = self.model.__new__(self.model)
        instance.__dict__.update(zip(self.attnames, converted, strict=True))
        instance._state = ModelState()
        instance._state.adding = False
        instance._state.db = db.alias
        return instance

    def build_joined(self, values: Sequence) -> Model | None:
        """``build``, or None for the NULLs of a LEFT JOIN that found no row
        (the primary key must be among the columns)."""
        return None if values[self._pk_index] is None else self.build(values)

    @cached_property
    def _pk_index(self) -> int:
        return self.fields.index(self.model._meta.pk)
