"""The steps a deployment records and runs, each with its undoing.

A step is done in one transaction with its own row (``engine``): either its
work and "done" are committed together or neither is, so a step found done
is skipped and a step found pending did nothing. What undoing needs (the
object made, the values replaced) is kept on the row (``undo``), next to
the step's arguments (``undo["args"]``) and its run (``undo["run"]``).

Writes go through the domain functions the pages use (folders, connections
Not yet connected, processes, triggers). Connections are never deleted,
except one made by the very run being rolled back: a failed deployment
leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from connections.catalog import get_catalog
from connections.models import Connection, Process, ProcessConnection, Trigger
from connections.transfer.import_ import create_unconnected_connection, find_folder
from connections.triggers import configure, processes
from portal import actions as portal_actions
from portal.models import Folder, RoleAssignment
from solutions.models import DeployedItem, Deployment, DeploymentStep


class StepFailed(Exception):
    """A step could not be done; the run is rolled back."""


@dataclass
class Context:
    deployment: Deployment
    actor: object | None

    @property
    def root(self) -> list[str]:
        return [n.strip() for n in self.deployment.folder_path.split("/") if n.strip()]

    def folder(self, relative: list[str]) -> Folder:
        folder = find_folder(self.root + list(relative))
        if folder is None:
            raise StepFailed(f"The folder {'/'.join(self.root + list(relative))} is missing.")
        return folder

    def item(self, component: str) -> DeployedItem | None:
        return self.deployment.items.filter(component=component).first()

    def connection(self, component: str) -> Connection | None:
        item = self.item(component)
        if item is None:
            raise StepFailed(f"The connection component {component} is not deployed.")
        return Connection.objects.filter(pk=item.object_id).first() if item.object_id else None

    def process(self, component: str) -> Process:
        item = self.item(component)
        process = Process.objects.filter(pk=item.object_id).first() if item else None
        if process is None:
            raise StepFailed(f"The process component {component} is not deployed.")
        return process

    def record(
        self,
        component: str,
        kind: str,
        obj_id,
        *,
        created: bool,
        auth: str = "",
        connector: str = "",
    ) -> None:
        DeployedItem.objects.update_or_create(
            deployment=self.deployment,
            component=component,
            defaults={
                "kind": kind,
                "object_id": obj_id,
                "created": created,
                "auth_choice": auth,
                "connector_key": connector,
            },
        )

    def forget(self, component: str) -> dict | None:
        item = self.item(component)
        if item is None:
            return None
        saved = {
            "kind": item.kind,
            "object_id": item.object_id,
            "created": item.created,
            "auth_choice": item.auth_choice,
            "connector_key": item.connector_key,
        }
        item.delete()
        return saved

    def restore_item(self, component: str, saved: dict | None) -> None:
        if saved:
            DeployedItem.objects.update_or_create(
                deployment=self.deployment, component=component, defaults=saved
            )


# -- each step: do(context, step) -> undo data; undo(context, step) ----------


def _begin(ctx: Context, step: DeploymentStep) -> dict:
    """An upgrade or an edit moves the row to its version and choices first."""
    args = step.undo["args"]
    d = ctx.deployment
    before = {
        "version": d.version_id,
        "upgraded_from": d.upgraded_from_id,
        "configuration": d.configuration,
    }
    if args.get("version") and args["mode"] in {"upgrade", "edit"}:
        upgraded_from = d.version_id if args["version"] != d.version_id else d.upgraded_from_id
        Deployment.objects.filter(pk=d.pk).update(
            version_id=args["version"],
            upgraded_from_id=upgraded_from,
            configuration=args["configuration"],
        )
    return {"before": before}


def _undo_begin(ctx: Context, step: DeploymentStep) -> None:
    before = step.undo.get("before")
    if before and step.undo["args"]["mode"] in {"upgrade", "edit"}:
        Deployment.objects.filter(pk=ctx.deployment.pk).update(
            version_id=before["version"],
            upgraded_from_id=before["upgraded_from"],
            configuration=before["configuration"],
        )


def _create_folder(ctx: Context, step: DeploymentStep) -> dict:
    path = step.undo["args"]["path"]
    found = find_folder(path)
    if found is not None:
        return {"created": False, "made": found.pk}
    parent = find_folder(path[:-1]) if len(path) > 1 else None
    if len(path) > 1 and parent is None:
        raise StepFailed(f"The folder {'/'.join(path[:-1])} is missing.")
    folder = portal_actions.create_folder(name=path[-1], parent=parent, actor=ctx.actor)
    if path == ctx.root:
        Deployment.objects.filter(pk=ctx.deployment.pk).update(folder=folder)
    return {"created": True, "made": folder.pk}


def _undo_create_folder(ctx: Context, step: DeploymentStep) -> None:
    if step.undo.get("created"):
        folder = Folder.objects.filter(pk=step.undo["made"]).first()
        if folder is not None:
            portal_actions.delete_folder(folder, actor=ctx.actor)


def _create_connection(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    connector = get_catalog().get(args["connector"])
    if connector is None or connector.auth_type(args["auth_type"]) is None:
        raise StepFailed(f"No connector {args['connector']} with {args['auth_type']}.")
    connection = create_unconnected_connection(
        folder=ctx.folder(args["folder"]),
        connector=connector,
        auth_type=args["auth_type"],
        name=args["name"],
        description=args["description"],
        own_app=args["own_app"],
        fields=args["fields"],
        polling_interval_seconds=args["polling_interval_seconds"],
        actor=ctx.actor,
        detail=f"Deployed by the solution {ctx.deployment.solution.name}: not yet connected; "
        "authenticate it to use it.",
    )
    ctx.record(
        step.component,
        "connection",
        connection.pk,
        created=True,
        auth="authenticate_after",
        connector=connector.key,
    )
    return {"made": connection.pk}


def _undo_create_connection(ctx: Context, step: DeploymentStep) -> None:
    # Made by the run being rolled back: nothing may be left behind.
    Connection.objects.filter(pk=step.undo.get("made")).delete()
    ctx.forget(step.component)


def _link_connection(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    if not Connection.objects.filter(pk=args["connection"]).exists():
        raise StepFailed("The connection to link is gone.")
    ctx.record(
        step.component,
        "connection",
        args["connection"],
        created=False,
        auth="link_existing",
        connector=args["connector"],
    )
    return {}


def _require_connection(ctx: Context, step: DeploymentStep) -> dict:
    ctx.record(
        step.component,
        "connection",
        None,
        created=False,
        auth="configurable",
        connector=step.undo["args"]["connector"],
    )
    return {}


def _forget_item(ctx: Context, step: DeploymentStep) -> None:
    ctx.forget(step.component)


def _release_connection(ctx: Context, step: DeploymentStep) -> dict:
    return {"item": ctx.forget(step.component)}


def _undo_release_connection(ctx: Context, step: DeploymentStep) -> None:
    ctx.restore_item(step.component, step.undo.get("item"))


def _update_connection(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    connection = ctx.connection(step.component)
    before = {"name": connection.name, "description": connection.description}
    _rename(connection, args["name"], args["description"])
    return {"before": before}


def _rename(connection: Connection, name: str, description: str) -> None:
    clash = Connection.objects.filter(folder=connection.folder, name__iexact=name).exclude(
        pk=connection.pk
    )
    if clash.exists():
        raise ValidationError(
            {"name": f"A connection named {name!r} already exists in {connection.folder.name}."}
        )
    connection.name, connection.description = name, (description or "").strip()[:500]
    connection.save(update_fields=["name", "description", "updated_at"])


def _undo_update_connection(ctx: Context, step: DeploymentStep) -> None:
    connection = ctx.connection(step.component)
    before = step.undo.get("before")
    if connection is not None and before:
        _rename(connection, before["name"], before["description"])


def _requirements(ctx: Context, requires: dict) -> tuple[dict, bool]:
    """Connector -> the connection bound to the named component (None: to
    choose at run time); and whether one may be of another folder (a
    linked connection stays where it is)."""
    bound: dict[str, Connection | None] = {}
    for connector, component in requires.items():
        bound[connector] = ctx.connection(component) if component else None
    return bound, True


def _create_process(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    requirements, elsewhere = _requirements(ctx, args["requires"])
    made = processes.create_process(
        folder=ctx.folder(args["folder"]),
        name=args["name"],
        description=args["description"],
        webhook_url=args["webhook_url"],
        job_queue=args["job_queue"],
        requirements=requirements,
        created_by=ctx.actor,
        elsewhere=elsewhere,
    )
    ctx.record(step.component, "process", made.process.pk, created=True)
    return {"made": made.process.pk}


def _undo_create_process(ctx: Context, step: DeploymentStep) -> None:
    process = Process.objects.filter(pk=step.undo.get("made")).first()
    if process is not None:
        processes.delete_process(process)
    ctx.forget(step.component)


def _process_state(process: Process) -> dict:
    return {
        "name": process.name,
        "description": process.description,
        "webhook_url": process.webhook_url,
        "job_queue": process.job_queue,
        "requires": {
            r.connector_key: r.connection_id
            for r in ProcessConnection.objects.filter(process=process)
        },
    }


def _update_process(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    process = ctx.process(step.component)
    before = _process_state(process)
    requirements, elsewhere = _requirements(ctx, args["requires"])
    processes.edit_process(
        process,
        name=args["name"],
        description=args["description"],
        webhook_url=args["webhook_url"],
        job_queue=args["job_queue"],
        requirements=requirements,
        elsewhere=elsewhere,
    )
    return {"before": before}


def _undo_update_process(ctx: Context, step: DeploymentStep) -> None:
    before = step.undo.get("before")
    if not before:
        return
    process = ctx.process(step.component)
    requirements = {
        connector: Connection.objects.filter(pk=pk).first() if pk else None
        for connector, pk in before["requires"].items()
    }
    processes.edit_process(
        process,
        name=before["name"],
        description=before["description"],
        webhook_url=before["webhook_url"],
        job_queue=before["job_queue"],
        requirements=requirements,
        elsewhere=True,
    )


def _delete_process(ctx: Context, step: DeploymentStep) -> dict:
    process = ctx.process(step.component)
    saved = {
        "row": {
            f.attname: getattr(process, f.attname)
            for f in process._meta.concrete_fields
            if f.attname not in {"created_at", "updated_at"}
        },
        "requires": _process_state(process)["requires"],
        "item": None,
    }
    processes.delete_process(process)
    saved["item"] = ctx.forget(step.component)
    return saved


def _undo_delete_process(ctx: Context, step: DeploymentStep) -> None:
    row = step.undo.get("row")
    if not row or Process.objects.filter(pk=row["id"]).exists():
        return
    process = Process.objects.create(**row)  # the same id: its sealed secret stays bound
    for connector, pk in step.undo.get("requires", {}).items():
        ProcessConnection.objects.create(
            process=process,
            connector_key=connector,
            connection=Connection.objects.filter(pk=pk).first() if pk else None,
        )
    ctx.restore_item(step.component, step.undo.get("item"))


def _create_trigger(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    connection = ctx.connection(args["connection"])
    if connection is None:
        raise StepFailed("The trigger's connection is configurable by users.")
    process = ctx.process(args["process"])
    trigger = configure.create_trigger(
        connection=connection,
        event_key=args["event"],
        filters=args["filters"],
        process=process,
        include_existing=args["include_existing"],
        enabled=args["enabled"],
        created_by=ctx.actor,
        process_elsewhere=True,
    )
    ctx.record(step.component, "trigger", trigger.pk, created=True)
    return {"made": trigger.pk}


def _undo_create_trigger(ctx: Context, step: DeploymentStep) -> None:
    trigger = Trigger.objects.filter(pk=step.undo.get("made")).first()
    if trigger is not None:
        configure.delete_trigger(trigger)
    ctx.forget(step.component)


def _trigger(ctx: Context, component: str) -> Trigger:
    item = ctx.item(component)
    trigger = Trigger.objects.filter(pk=item.object_id).first() if item else None
    if trigger is None:
        raise StepFailed(f"The trigger component {component} is not deployed.")
    return trigger


def _set_trigger(trigger: Trigger, *, filters: dict, enabled: bool, include_existing: bool) -> None:
    """In place, keeping the cursor: no replay, no gap."""
    configure.edit_trigger(trigger, filters=filters, keep_cursor=True)
    if trigger.include_existing != include_existing:
        Trigger.objects.filter(pk=trigger.pk).update(include_existing=include_existing)
    if enabled and not trigger.enabled:
        configure.enable_trigger(trigger)
    elif not enabled and trigger.enabled:
        configure.disable_trigger(trigger)


def _update_trigger(ctx: Context, step: DeploymentStep) -> dict:
    args = step.undo["args"]
    trigger = _trigger(ctx, step.component)
    before = {
        "filters": trigger.filters,
        "enabled": trigger.enabled,
        "include_existing": trigger.include_existing,
    }
    _set_trigger(
        trigger,
        filters=args["filters"],
        enabled=args["enabled"],
        include_existing=args["include_existing"],
    )
    return {"before": before}


def _undo_update_trigger(ctx: Context, step: DeploymentStep) -> None:
    before = step.undo.get("before")
    if before:
        _set_trigger(_trigger(ctx, step.component), **before)


TRIGGER_KEPT = (
    "id", "connection_id", "event_key", "filters", "process_id", "include_existing", "enabled",
    "cursor", "created_by_id", "last_poll_ok", "last_poll_items", "last_error",
    "consecutive_failures",
)  # fmt: skip


def _delete_trigger(ctx: Context, step: DeploymentStep) -> dict:
    item = ctx.item(step.component)
    trigger = Trigger.objects.filter(pk=item.object_id).first() if item else None
    saved = {"row": None, "item": None}
    if trigger is not None:
        saved["row"] = {name: getattr(trigger, name) for name in TRIGGER_KEPT}
        configure.delete_trigger(trigger)
    saved["item"] = ctx.forget(step.component)
    return saved


def _undo_delete_trigger(ctx: Context, step: DeploymentStep) -> None:
    row = step.undo.get("row")
    if row and not Trigger.objects.filter(pk=row["id"]).exists():
        # The same trigger again, with its cursor (its past events went with it).
        Trigger.objects.create(**row, next_poll_at=timezone.now() if row["enabled"] else None)
    ctx.restore_item(step.component, step.undo.get("item"))


def _delete_folder(ctx: Context, step: DeploymentStep) -> dict:
    folder = Folder.objects.filter(pk=step.undo["args"]["folder"]).first()
    if folder is None:
        return {"deleted": None}
    empty = not (
        folder.children.exists()
        or folder.connections.exists()
        or folder.processes.exists()
        or RoleAssignment.objects.filter(folder=folder).exists()
    )
    if not empty:
        return {"deleted": None}
    saved = {"pk": folder.pk, "name": folder.name, "parent": folder.parent_id}
    portal_actions.delete_folder(folder, actor=ctx.actor)
    return {"deleted": saved}


def _undo_delete_folder(ctx: Context, step: DeploymentStep) -> None:
    saved = step.undo.get("deleted")
    if saved and not Folder.objects.filter(pk=saved["pk"]).exists():
        Folder.objects.create(pk=saved["pk"], name=saved["name"], parent_id=saved["parent"])


def _nothing(ctx: Context, step: DeploymentStep) -> None:
    return None


STEPS = {
    "begin": (_begin, _undo_begin),
    "create_folder": (_create_folder, _undo_create_folder),
    "create_connection": (_create_connection, _undo_create_connection),
    "link_connection": (_link_connection, _forget_item),
    "require_connection": (_require_connection, _forget_item),
    "release_connection": (_release_connection, _undo_release_connection),
    "update_connection": (_update_connection, _undo_update_connection),
    "create_process": (_create_process, _undo_create_process),
    "update_process": (_update_process, _undo_update_process),
    "delete_process": (_delete_process, _undo_delete_process),
    "create_trigger": (_create_trigger, _undo_create_trigger),
    "update_trigger": (_update_trigger, _undo_update_trigger),
    "delete_trigger": (_delete_trigger, _undo_delete_trigger),
    "delete_folder": (_delete_folder, _undo_delete_folder),
}


def actor_of(deployment: Deployment, step: DeploymentStep | None):
    """Who runs the run: the user its first step names."""
    user_id = (step.undo.get("args", {}) if step else {}).get("actor")
    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id).first()
