"""The connector catalog: declarative definitions loaded from known folders.

Built-in definitions live in ``definitions/``; operators add folders with
``PORTAL_CONNECTORS_DIRS``. The catalog is loaded once per process, at
start-up (``ConnectionsConfig.ready``), so a broken definition stops the
process with a message naming the file, the field and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from pydantic import ValidationError

from connections.catalog.schema import AuthKind, AuthTypeSpec, ConnectorSpec, FieldSpec

if TYPE_CHECKING:  # the catalog is data: it never needs the models at run time
    from connections.models import Connection

BUILTIN_DEFINITIONS = Path(__file__).parent / "definitions"

__all__ = [
    "AuthKind",
    "AuthTypeSpec",
    "Catalog",
    "CatalogError",
    "ConnectorMissing",
    "ConnectorSpec",
    "FieldSpec",
    "connector_of",
    "get_catalog",
    "load_catalog",
]


class CatalogError(ImproperlyConfigured):
    pass


class ConnectorMissing(Exception):
    """A connection's connector is no longer in the catalog; the message is for the user."""


@dataclass(frozen=True)
class Catalog:
    connectors: dict[str, ConnectorSpec]

    def all(self) -> list[ConnectorSpec]:
        return sorted(self.connectors.values(), key=lambda c: c.name.casefold())

    def get(self, key: str) -> ConnectorSpec | None:
        return self.connectors.get(key)

    def search(self, query: str) -> list[ConnectorSpec]:
        return [connector for connector in self.all() if connector.matches(query)]

    def categories(self) -> list[str]:
        return sorted({c for connector in self.connectors.values() for c in connector.categories})


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{location}: {item['msg']}")
    return "; ".join(problems)


def load_definition(path: Path) -> ConnectorSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CatalogError(f"Connector definition {path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"Connector definition {path}: expected a mapping at the top level.")
    try:
        spec = ConnectorSpec.model_validate(data)
    except ValidationError as error:
        raise CatalogError(f"Connector definition {path}: {_describe(error)}") from None
    if spec.key != path.stem:
        raise CatalogError(
            f"Connector definition {path}: key: {spec.key!r} must match the file name "
            f"({path.stem!r})."
        )
    return spec


def load_catalog(folders: list[Path], *, include_sandbox: bool) -> Catalog:
    connectors: dict[str, ConnectorSpec] = {}
    origins: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise CatalogError(f"Connector folder {folder} does not exist or is not a folder.")
        for path in sorted(folder.glob("*.yaml")):
            spec = load_definition(path)
            if spec.key in connectors:
                raise CatalogError(
                    f"Connector definition {path}: key: {spec.key!r} is already defined "
                    f"in {origins[spec.key]}."
                )
            if spec.sandbox and not include_sandbox:
                continue
            connectors[spec.key] = spec
            origins[spec.key] = path
    return Catalog(connectors)


@cache
def get_catalog() -> Catalog:
    folders = [BUILTIN_DEFINITIONS, *(Path(p) for p in settings.PORTAL_CONNECTORS_DIRS)]
    return load_catalog(folders, include_sandbox=settings.PORTAL_SANDBOX_ENABLED)


@receiver(setting_changed)
def _reload(setting: str, **kwargs) -> None:
    if setting in {"PORTAL_CONNECTORS_DIRS", "PORTAL_SANDBOX_ENABLED"}:
        get_catalog.cache_clear()


def connector_of(connection: Connection) -> ConnectorSpec:
    """The connection's connector; ``ConnectorMissing`` when its definition
    has left the catalog."""
    connector = get_catalog().get(connection.connector_key)
    if connector is None:
        raise ConnectorMissing(
            f"The connector {connection.connector_key!r} is no longer in the catalog."
        )
    return connector
