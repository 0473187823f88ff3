"""Versions made directly from a manifest (valid per solutions.package), a
deployment run as a worker would run it, and a picture of what a folder
holds, to compare before and after."""

from __future__ import annotations

import copy

from connections.models import Connection, Process, ProcessConnection, Trigger
from portal.models import Folder
from solutions.deploy import actions, engine
from solutions.models import DeployedItem, Solution, SolutionVersion
from solutions.package import parse_settings, validate

CONNECTION = "connection-1"
PROCESS = "process-1"
TRIGGER = "trigger-1"

BASE = {
    "format": 1,
    "solution": {"name": "Records"},
    "version": 1,
    "connections": [
        {
            "key": CONNECTION,
            "connector": "sandbox",
            "name": "Records",
            "description": "The records",
            "auth_type": "pat",
        }
    ],
    "processes": [
        {
            "key": PROCESS,
            "name": "Book",
            "webhook_url": "https://hooks.example.com/book",
            "requires": [{"connector": "sandbox", "connection": CONNECTION}],
        }
    ],
    "triggers": [
        {
            "key": TRIGGER,
            "connection": CONNECTION,
            "process": PROCESS,
            "event": "record_created",
            "filters": {"title_contains": "invoice"},
        }
    ],
}


def manifest(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    validate(data)
    return data


def version_of(data: dict | None = None, *, number: int = 1, solution: Solution | None = None):
    data = data or manifest()
    solution = solution or Solution.objects.get_or_create(name=data["solution"]["name"])[0]
    data = {**data, "version": number}
    return SolutionVersion.objects.create(solution=solution, number=number, manifest=data)


def settings_doc(folder: str = "Shared/Deployed", **sections):
    return parse_settings({"folder": folder, **sections})


def run_all(deployment) -> str:
    """What a worker does with the queued task."""
    return engine.run(deployment.pk)


def deploy(version, user, folder="Shared/Deployed", **sections):
    deployment = actions.deploy(
        version=version, settings=settings_doc(folder, **sections), actor=user
    )
    state = run_all(deployment)
    deployment.refresh_from_db()
    return deployment, state


def picture() -> dict:
    """Every folder, connection, process, requirement, trigger and deployed
    item, as rows (timestamps left out)."""

    def rows(model, *exclude):
        skip = {"created_at", "updated_at", "next_poll_at", *exclude}
        return sorted(
            ({k: v for k, v in row.items() if k not in skip} for row in model.objects.values()),
            key=lambda row: row["id"],
        )

    return {
        "folders": rows(Folder),
        "connections": rows(Connection, "next_check_at"),
        "processes": rows(Process),
        "requirements": rows(ProcessConnection),
        "triggers": rows(Trigger),
        "items": rows(DeployedItem),
    }
