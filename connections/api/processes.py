"""Processes through the API: a folder's list, one process, and making one
(its webhook signing secret in the 201 answer, never again). The same
domain function as the pages (``connections.triggers.processes``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import Query, Router, Status

from connections.api.folders import PageQuery
from connections.api.folders import router as folders_router
from connections.api.schemas import (
    ProcessCreate,
    ProcessCreated,
    ProcessEdit,
    ProcessEdited,
    ProcessOut,
    ProcessPage,
    answers,
    page_of,
)
from connections.api.scope import scoped_folder, scoped_in
from connections.catalog import get_catalog
from connections.models import Connection, Process
from connections.triggers.processes import create_process, edit_process
from portal.models import Folder
from portal.permissions import Action

router = Router()

NO_SUCH_PROCESS = "No such process."


def scoped_process(
    request: HttpRequest, process_id: int, action: Action
) -> tuple[Process, frozenset]:
    """The process and the caller's permissions in its folder: 404 out of
    sight or out of the key's scope, 403 without ``action``."""
    process = Process.objects.select_related("folder").filter(pk=process_id).first()
    if process is None:
        raise Http404(NO_SUCH_PROCESS)
    return process, scoped_in(request, process.folder, action, missing=NO_SUCH_PROCESS)


def process_out(process: Process) -> dict:
    """The process as the API shows it; never its signing secret."""
    return {
        "id": process.pk,
        "folder_id": process.folder_id,
        "name": process.name,
        "description": process.description,
        "webhook_url": process.webhook_url,
        "has_signing_secret": bool(process.ciphertext),
        "job_queue": process.job_queue,
        "requirements": [
            {
                "connector": requirement.connector_key,
                "connection_id": requirement.connection_id,
                "connection_name": requirement.connection.name if requirement.connection else None,
                "connection_state": (
                    requirement.connection.state if requirement.connection else None
                ),
            }
            for requirement in process.requirements.all()
        ],
        "created_at": process.created_at,
        "updated_at": process.updated_at,
    }


def _with_requirements(processes):
    return processes.prefetch_related("requirements__connection")


@folders_router.get(
    "/folders/{int:folder_id}/processes",
    response=answers({200: ProcessPage}, 403, 404, 422),
    tags=["Processes"],
    summary="Processes in a folder",
)
def list_processes(request: HttpRequest, folder_id: int, query: Query[PageQuery]) -> dict:
    folder, _ = scoped_folder(request, folder_id, Action.VIEW_PROCESSES)
    processes = _with_requirements(Process.objects.filter(folder=folder).order_by("name", "pk"))
    items, counts = page_of(processes, query.page, query.page_size)
    return {"items": [process_out(process) for process in items], **counts}


@router.get(
    "/processes/{int:process_id}",
    response=answers({200: ProcessOut}, 403, 404),
    summary="One process (never its signing secret)",
)
def get_process(request: HttpRequest, process_id: int) -> dict:
    process, _ = scoped_process(request, process_id, Action.VIEW_PROCESSES)
    return process_out(process)


def _requirements(folder: Folder, given: dict[str, int | None]) -> dict[str, Connection | None]:
    """Connector key -> a connection of the folder; an id that is not one
    (missing, elsewhere) is refused alike, naming the connector."""
    found = Connection.objects.filter(
        folder=folder, pk__in=[pk for pk in given.values() if pk is not None]
    ).in_bulk()
    catalog = get_catalog()
    requirements, errors = {}, []
    for connector_key, pk in given.items():
        if catalog.get(connector_key) is None:
            errors.append(f"No connector {connector_key!r} in the catalog.")
        elif pk is not None and pk not in found:
            errors.append(f"{folder.name} has no connection {pk} for {connector_key}.")
        requirements[connector_key] = found.get(pk) if pk is not None else None
    if errors:
        raise ValidationError({"requirements": errors})
    return requirements


@folders_router.post(
    "/folders/{int:folder_id}/processes",
    response=answers({201: ProcessCreated}, 400, 403, 404, 422, 503),
    tags=["Processes"],
    summary="Create a process",
    description="Started by a Standard Webhooks delivery to webhook_url and/or by robots "
    "pulling its jobs (job_queue). With a webhook, its signing secret is in this answer and "
    "never again.",
)
def create_process_in_folder(request: HttpRequest, folder_id: int, data: ProcessCreate):
    folder, _ = scoped_folder(request, folder_id, Action.MANAGE_PROCESSES)
    made = create_process(
        folder=folder,
        name=data.name,
        description=data.description,
        webhook_url=data.webhook_url,
        job_queue=data.job_queue,
        requirements=_requirements(folder, data.requirements),
        created_by=request.user,
    )
    process = _with_requirements(Process.objects.filter(pk=made.process.pk)).get()
    return Status(201, {**process_out(process), "signing_secret": made.signing_secret})


@router.patch(
    "/processes/{int:process_id}",
    response=answers({200: ProcessEdited}, 400, 403, 404, 422, 503),
    summary="Edit a process",
    description="Only what is sent changes; the same rules as its creation (422 by field). "
    "Changing webhook_url keeps the signing secret; a process given its first webhook gets "
    "one, in this answer only. requirements, when sent, is the whole set.",
)
def edit_process_by_id(request: HttpRequest, process_id: int, data: ProcessEdit):
    process, _ = scoped_process(request, process_id, Action.MANAGE_PROCESSES)
    sent = data.dict(exclude_unset=True)
    given = {key: value for key, value in sent.items() if value is not None}
    saved = edit_process(
        process,
        name=given.get("name", process.name),
        description=given.get("description", process.description),
        webhook_url=given.get("webhook_url", process.webhook_url),
        job_queue=given.get("job_queue", process.job_queue),
        requirements=(
            _requirements(process.folder, given["requirements"])
            if "requirements" in given
            else None
        ),
    )
    process = _with_requirements(Process.objects.filter(pk=saved.process.pk)).get()
    return {**process_out(process), "signing_secret": saved.signing_secret}
