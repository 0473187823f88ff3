"""The transfer document: one pydantic definition that both validates a file
and emits the JSON Schema shipped next to it (``schema.json``; regenerate it
with ``python -m connections.transfer.format --write``).

Version 1. A reader refuses a document of a newer version whole; a file that
does not fit is refused whole too, with each problem named by where it is
(``connections[3].auth_type: ...``). What the portal knows (connectors, auth
types of a connector, fields, events) is checked by the import's plan."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connections.catalog.schema import KEY_PATTERN, AuthKind

FORMAT_VERSION = 1
ModelT = TypeVar("ModelT", bound=BaseModel)
SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA_ID = "https://connections-portal.example/schemas/transfer-v1.json"

FolderName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
# A shared folder's names from the top: ["Finance", "Payables"].
FolderPath = Annotated[list[FolderName], Field(min_length=1, max_length=50)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Description = Annotated[str, Field(max_length=500)]
Key = Annotated[str, Field(pattern=KEY_PATTERN)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FolderEntry(Model):
    """A shared folder, so that folders move even when they hold nothing."""

    path: FolderPath
    description: Description = ""


class TriggerEntry(Model):
    """A trigger of the connection it is listed under."""

    event: Key = Field(description="An event of the connection's connector.")
    filters: dict[str, str] = Field(default_factory=dict)
    include_existing: bool = False
    enabled: bool = True
    process: Name = Field(description="A process of the connection's folder, by name.")


class ConnectionEntry(Model):
    """A connection's definition: never its credentials."""

    folder: FolderPath
    connector: Key
    name: Name
    description: Description = ""
    auth_type: AuthKind
    own_app: bool = Field(
        False, description="Authorization code with the connection's own OAuth 2.0 app."
    )
    default: bool = Field(False, description="The folder's default for its connector.")
    polling_interval_seconds: int = Field(300, ge=60, le=24 * 60 * 60)
    fields: dict[str, str] = Field(
        default_factory=dict, description="Non-secret values: instance URL, subdomain, e-mail."
    )
    triggers: list[TriggerEntry] = Field(default_factory=list)


class RequirementEntry(Model):
    connector: Key
    connection: Name | None = Field(
        None, description="A connection of the process's folder, by name; null: to choose."
    )


class ProcessEntry(Model):
    folder: FolderPath
    name: Name
    description: Description = ""
    webhook_url: Annotated[str, Field(max_length=500)] = ""
    job_queue: bool = False
    required_connectors: list[RequirementEntry] = Field(default_factory=list)


class Document(Model):
    """Connection definitions of shared folders, with their processes and triggers."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Connections portal transfer document",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
        },
    )

    format: Annotated[int, Field(ge=1, le=FORMAT_VERSION)] = Field(
        description="The format's version; a reader refuses a newer one."
    )
    exported_at: datetime | None = None
    folders: list[FolderEntry] = Field(default_factory=list)
    connections: list[ConnectionEntry] = Field(default_factory=list)
    processes: list[ProcessEntry] = Field(default_factory=list)


class DocumentRefused(Exception):
    """The document was refused whole; ``problems`` name where and why."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def where(location: tuple[Any, ...]) -> str:
    """("connections", 3, "auth_type") -> "connections[3].auth_type"."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_json(raw: bytes | str) -> Any:
    """The JSON text ``raw``, parsed, or ``DocumentRefused``."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentRefused([f"(top level): not a JSON document ({error})"]) from None


def problems_of(error: ValidationError) -> list[str]:
    """A pydantic refusal as "where: why" lines."""
    return [f"{where(item['loc'])}: {item['msg']}" for item in error.errors()]


def validated(model: type[ModelT], data: Any, *, newest: int, to: str) -> ModelT:
    """``data`` as a ``model`` document of format ``newest`` or older, or
    ``DocumentRefused`` naming each problem (a newer format on its own, with
    what upgrading the portal would let one do: ``to``)."""
    if not isinstance(data, dict):
        raise DocumentRefused(["(top level): expected a JSON object"])
    version = data.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > newest:
        raise DocumentRefused(
            [
                f"format: version {version} is newer than this portal reads "
                f"(up to {newest}); upgrade the portal to {to}"
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise DocumentRefused(problems_of(error)) from None


def parse(raw: bytes | str) -> Document:
    """The document in ``raw`` (JSON text), or ``DocumentRefused``."""
    return validate(load_json(raw))


def validate(data: Any) -> Document:
    return validated(Document, data, newest=FORMAT_VERSION, to="import it")


def json_schema() -> dict:
    return Document.model_json_schema()


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m connections.transfer.format [--write]
    if "--write" in sys.argv:
        SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    else:
        sys.stdout.write(schema_text())
