"""The solution package: a published version's manifest, and the file that
moves it from one portal to another. One pydantic definition validates a
manifest (built here or uploaded) and emits the JSON Schema shipped next to
it (``package-schema.json``; regenerate with ``python -m solutions.package
--write``). It shares its building blocks and its refusal rules with the
connections transfer document (``connections/transfer/format.py``).

Version 1. Never a credential: definitions only. Component keys are stable
across versions ("connection-12"), so an upgrade knows which trigger is
which. Folders are relative to the deployment's folder ([] is that folder).

Also here: ``DeploymentSettings``, the deployer's choices per component (the
pages' form and the runtime API's settings document alike)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from connections.catalog.schema import AuthKind
from connections.transfer.format import (
    Description,
    DocumentRefused,
    FolderName,
    Key,
    Model,
    Name,
    load_json,
    problems_of,
    validated,
)

FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("package-schema.json")
SCHEMA_ID = "https://connections-portal.example/schemas/solution-package-v1.json"

ComponentKey = Annotated[str, Field(pattern=r"^(connection|trigger|process)-[0-9]{1,18}$")]
RelativeFolder = Annotated[list[FolderName], Field(max_length=50)]

# What a deployer may change unless the author locked it.
CONNECTION_PROPERTIES = ("name", "description", "auth_type")
TRIGGER_PROPERTIES = ("filters", "enabled", "include_existing")
PROCESS_PROPERTIES = ("name", "description", "webhook_url", "job_queue")


class ConnectionComponent(Model):
    key: ComponentKey
    folder: RelativeFolder = Field(default_factory=list)
    connector: Key
    name: Name
    description: Description = ""
    auth_type: AuthKind
    own_app: bool = False
    polling_interval_seconds: int = Field(300, ge=60, le=24 * 60 * 60)
    fields: dict[str, str] = Field(
        default_factory=dict, description="Non-secret values: instance URL, subdomain, e-mail."
    )
    locked: list[Literal["name", "description", "auth_type"]] = Field(default_factory=list)


class TriggerComponent(Model):
    key: ComponentKey
    connection: ComponentKey = Field(description="The connection component it polls.")
    process: ComponentKey = Field(description="The process component it starts.")
    event: Key
    filters: dict[str, str] = Field(default_factory=dict)
    include_existing: bool = False
    enabled: bool = True
    locked: list[Literal["filters", "enabled", "include_existing"]] = Field(default_factory=list)


class Requirement(Model):
    connector: Key
    connection: ComponentKey | None = Field(
        None, description="The connection component that serves it; null: chosen at run time."
    )


class ProcessComponent(Model):
    key: ComponentKey
    folder: RelativeFolder = Field(default_factory=list)
    name: Name
    description: Description = ""
    webhook_url: Annotated[str, Field(max_length=500)] = ""
    job_queue: bool = False
    requires: list[Requirement] = Field(default_factory=list)
    locked: list[Literal["name", "description", "webhook_url", "job_queue"]] = Field(
        default_factory=list
    )


class SolutionInfo(Model):
    name: Name
    description: Description = ""


class Package(Model):
    """A solution version: its connections, event triggers and processes."""

    model_config = Model.model_config | {
        "title": "Connections portal solution package",
        "json_schema_extra": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
        },
    }

    format: Annotated[int, Field(ge=1, le=FORMAT_VERSION)] = Field(
        description="The format's version; a reader refuses a newer one."
    )
    solution: SolutionInfo
    version: Annotated[int, Field(ge=1)]
    published_at: datetime | None = None
    connections: list[ConnectionComponent] = Field(default_factory=list)
    triggers: list[TriggerComponent] = Field(default_factory=list)
    processes: list[ProcessComponent] = Field(default_factory=list)


AuthChoice = Literal["configurable", "authenticate_after", "link_existing"]


class ConnectionChoice(Model):
    """The deployer's choice for a connection component."""

    auth: AuthChoice = "authenticate_after"
    link: int | None = Field(None, description="The connection to link (link_existing).")
    name: Name | None = None
    description: Description | None = None


class TriggerChoice(Model):
    filters: dict[str, str] | None = None
    enabled: bool | None = None
    include_existing: bool | None = None


class ProcessChoice(Model):
    name: Name | None = None
    description: Description | None = None
    webhook_url: Annotated[str, Field(max_length=500)] | None = None
    job_queue: bool | None = None


class DeploymentSettings(Model):
    """The deployer's choices, by component key; a component not named keeps
    the package's values (a connection: Authenticate after deployment)."""

    model_config = Model.model_config | {"title": "Deployment settings document"}

    folder: Annotated[str, Field(min_length=1, max_length=1000)] = Field(
        description='The folder to deploy into, by path: "Shared/Finance/Invoices".'
    )
    connections: dict[ComponentKey, ConnectionChoice] = Field(default_factory=dict)
    triggers: dict[ComponentKey, TriggerChoice] = Field(default_factory=dict)
    processes: dict[ComponentKey, ProcessChoice] = Field(default_factory=dict)


def parse(raw: bytes | str) -> Package:
    """The package in ``raw`` (JSON text), or ``DocumentRefused`` naming each problem."""
    return validate(load_json(raw))


def validate(data: Any) -> Package:
    package = validated(Package, data, newest=FORMAT_VERSION, to="use this package")
    problems = _references(package)
    if problems:
        raise DocumentRefused(problems)
    return package


def _references(package: Package) -> list[str]:
    """Keys unique, and every trigger's and requirement's key one of the package's."""
    problems = []
    connections = {c.key for c in package.connections}
    processes = {p.key for p in package.processes}
    keys = [c.key for c in package.connections] + [p.key for p in package.processes]
    keys += [t.key for t in package.triggers]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"components: the key {key} is used twice")
    for i, trigger in enumerate(package.triggers):
        if trigger.connection not in connections:
            problems.append(
                f"triggers[{i}].connection: no connection component {trigger.connection}"
            )
        if trigger.process not in processes:
            problems.append(f"triggers[{i}].process: no process component {trigger.process}")
    for i, process in enumerate(package.processes):
        for j, requirement in enumerate(process.requires):
            if requirement.connection is not None and requirement.connection not in connections:
                problems.append(
                    f"processes[{i}].requires[{j}].connection: "
                    f"no connection component {requirement.connection}"
                )
    return problems


def parse_settings(data: Any) -> DeploymentSettings:
    """A deployment settings document (JSON already parsed), or ``DocumentRefused``."""
    if not isinstance(data, dict):
        raise DocumentRefused(["(top level): expected a JSON object"])
    try:
        return DeploymentSettings.model_validate(data)
    except ValidationError as error:
        raise DocumentRefused(problems_of(error)) from None


def json_schema() -> dict:
    return Package.model_json_schema()


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m solutions.package [--write]
    if "--write" in sys.argv:
        SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    else:
        sys.stdout.write(schema_text())
