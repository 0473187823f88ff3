"""Writing the transfer document of the shared folders (or of one folder and
the folders below it). Built from the rows' plain columns only: no
credential is read, so no secret can reach the file (a BYOA app's client id
lives with its secret in the sealed credential and stays there)."""

from __future__ import annotations

from django.utils import timezone

from connections.catalog import get_catalog
from connections.models import Connection, Process, Trigger
from connections.transfer.format import (
    FORMAT_VERSION,
    ConnectionEntry,
    Document,
    FolderEntry,
    ProcessEntry,
    RequirementEntry,
    TriggerEntry,
)
from portal import audit
from portal.models import AuditRecord, Folder


def folder_paths(folders: list[Folder]) -> dict[int, list[str]]:
    """Each folder's names from the top, reading every ancestor in one query."""
    ids = {pk for folder in folders for pk in folder.ancestor_ids}
    names = dict(Folder.objects.filter(pk__in=ids).values_list("pk", "name"))
    return {folder.pk: [names[pk] for pk in folder.ancestor_ids] for folder in folders}


def folders_in_scope(folder: Folder | None):
    """The shared folders exported: all, or ``folder`` and those below it."""
    folders = Folder.objects.shared()
    if folder is not None:
        folders = folders.filter(path__startswith=folder.path)
    return folders.order_by("path")


def declared_fields(connection: Connection) -> dict[str, str]:
    """The connection's own field values: those its connector and auth type
    declare (values an OAuth sign-in discovered, such as an instance URL,
    come back with the next sign-in). Solution packages use it too."""
    connector = get_catalog().get(connection.connector_key)
    if connector is None:
        return dict(connection.fields)
    declared = connector.field_map(connection.auth_type)
    return {key: str(value) for key, value in connection.fields.items() if key in declared}


def build_document(folder: Folder | None = None) -> Document:
    """The document of the shared folders in scope, in a constant number of queries."""
    folders = list(folders_in_scope(folder))
    paths = folder_paths(folders)
    ids = list(paths)
    connections = list(
        Connection.objects.filter(folder_id__in=ids).order_by("folder__path", "name", "pk")
    )
    triggers: dict[int, list[Trigger]] = {}
    for trigger in (
        Trigger.objects.filter(connection__folder_id__in=ids)
        .select_related("process")
        .order_by("connection_id", "pk")
    ):
        triggers.setdefault(trigger.connection_id, []).append(trigger)
    processes = list(
        Process.objects.filter(folder_id__in=ids)
        .prefetch_related("requirements__connection")
        .order_by("folder__path", "name", "pk")
    )
    return Document(
        format=FORMAT_VERSION,
        exported_at=timezone.now().replace(microsecond=0),
        folders=[FolderEntry(path=paths[f.pk], description=f.description) for f in folders],
        connections=[
            ConnectionEntry(
                folder=paths[c.folder_id],
                connector=c.connector_key,
                name=c.name,
                description=c.description,
                auth_type=c.auth_type,
                own_app=c.own_app,
                default=c.is_default,
                polling_interval_seconds=c.polling_interval_seconds,
                fields=declared_fields(c),
                triggers=[
                    TriggerEntry(
                        event=t.event_key,
                        filters={k: str(v) for k, v in t.filters.items()},
                        include_existing=t.include_existing,
                        enabled=t.enabled,
                        process=t.process.name,
                    )
                    for t in triggers.get(c.pk, [])
                ],
            )
            for c in connections
        ],
        processes=[
            ProcessEntry(
                folder=paths[p.folder_id],
                name=p.name,
                description=p.description,
                webhook_url=p.webhook_url,
                job_queue=p.job_queue,
                required_connectors=[
                    RequirementEntry(
                        connector=r.connector_key,
                        connection=r.connection.name if r.connection_id else None,
                    )
                    for r in p.requirements.all()
                ],
            )
            for p in processes
        ],
    )


def summary(document: Document) -> str:
    triggers = sum(len(c.triggers) for c in document.connections)
    return (
        f"{len(document.folders)} folders, {len(document.connections)} connections, "
        f"{len(document.processes)} processes, {triggers} triggers"
    )


def export_connections(*, folder: Folder | None = None, actor=None) -> str:
    """The transfer document as JSON text; the export is audited."""
    document = build_document(folder)
    where = f" of {' / '.join(folder_paths([folder])[folder.pk])}" if folder else ""
    audit.record(
        AuditRecord.Action.CONNECTIONS_EXPORTED,
        actor=actor,
        folder=folder,
        detail=f"Exported {summary(document)}{where}.",
    )
    return document.model_dump_json(indent=2) + "\n"
