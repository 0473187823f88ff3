"""Authoring a solution: made from a source folder, its draft components
picked there (and below), their properties edited and locked, removed.
Permissions are the caller's to ask (``solutions.access``); these functions
check that what is asked makes sense, by field, and change nothing when
they refuse.

- Picking an event trigger brings its connection and its process along;
  picking a process brings the connections it requires (bound to one) that
  lie in the source folder, so nothing needs configuring by hand after a
  deployment (the reference's Solutions Management does not show those).
- Removing a connection or a process removes the triggers that need it: a
  trigger is packaged with both.
- A component's key is stable: "connection-<pk>", "trigger-<pk>",
  "process-<pk>" of the object picked.

Building and publishing are in ``solutions.publishing``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from connections.catalog import get_catalog
from connections.catalog.events import clean_filters
from connections.models import Connection, Process, ProcessConnection, Trigger
from connections.triggers.processes import clean_webhook_url
from portal import audit
from portal.models import AuditRecord, Folder
from portal.permissions import Action, folders_where
from solutions.models import Component, Solution
from solutions.package import CONNECTION_PROPERTIES, PROCESS_PROPERTIES, TRIGGER_PROPERTIES

Kind = Component.Kind
PROPERTIES = {
    Kind.CONNECTION: CONNECTION_PROPERTIES,
    Kind.TRIGGER: TRIGGER_PROPERTIES,
    Kind.PROCESS: PROCESS_PROPERTIES,
}
# How a property is labelled on the pages (the reference's words for a connection's).
LABELS = {
    Kind.CONNECTION: {
        "name": "Connection name",
        "description": "Connection description",
        "auth_type": "Authentication type",
    },
    Kind.TRIGGER: {
        "filters": "Filters",
        "enabled": "Enabled",
        "include_existing": "Fire for the items that exist now too",
    },
    Kind.PROCESS: {
        "name": "Process name",
        "description": "Process description",
        "webhook_url": "Webhook URL",
        "job_queue": "Robots pull its jobs",
    },
}
NAME_MAX = 120
DESCRIPTION_MAX = 500


def key_of(kind: str, pk: int) -> str:
    return f"{kind}-{pk}"


def subtree(folder: Folder):
    """The folder and the folders below it."""
    return Folder.objects.filter(path__startswith=folder.path)


# --- Solutions ----------------------------------------------------------------


def clean_solution_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the solution a name."})
    if len(name) > NAME_MAX:
        raise ValidationError({"name": f"The name is too long ({NAME_MAX} characters at most)."})
    taken = Solution.objects.filter(name__iexact=name).exclude(pk=exclude_pk)
    if taken.exists():
        raise ValidationError({"name": f"There is already a solution named {name}."})
    return name


def create_solution(
    *, name: str, source_folder: Folder, description: str = "", actor=None
) -> Solution:
    """A new solution of ``source_folder`` with no components yet;
    ValidationError by field (name, description)."""
    name = clean_solution_name(name)
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise ValidationError(
            {"description": f"The description is too long ({DESCRIPTION_MAX} characters at most)."}
        )
    try:
        with transaction.atomic():
            solution = Solution.objects.create(
                name=name, description=description, source_folder=source_folder, created_by=actor
            )
            _record(AuditRecord.Action.SOLUTION_CREATED, solution, actor=actor)
    except IntegrityError:
        raise ValidationError({"name": f"There is already a solution named {name}."}) from None
    return solution


# --- What may be picked -------------------------------------------------------


@dataclass
class Candidates:
    """What the Components panel offers to add: the source folder's (and its
    subfolders') connections, triggers and processes the author may see and
    the solution does not hold yet; and ``required``, the connections the
    solution's processes require that it does not hold."""

    connections: list[Connection] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    required: list[Connection] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.connections or self.triggers or self.processes or self.required)


def _held(solution: Solution) -> dict[str, set[int]]:
    held: dict[str, set[int]] = {kind: set() for kind in Kind.values}
    for kind, connection, trigger, process in solution.components.values_list(
        "kind", "connection_id", "trigger_id", "process_id"
    ):
        pk = {Kind.CONNECTION: connection, Kind.TRIGGER: trigger, Kind.PROCESS: process}[kind]
        if pk is not None:
            held[kind].add(pk)
    return held


def _seen(user, action: Action, folder: Folder):
    """The folders of ``folder``'s subtree where ``user`` may do ``action``."""
    return subtree(folder).filter(pk__in=folders_where(user, action).values("pk")).values("pk")


def candidates(solution: Solution, user) -> Candidates:
    """What ``user`` may add to ``solution`` (a few queries, whatever the folder holds)."""
    folder = solution.source_folder
    if folder is None:
        return Candidates()
    held = _held(solution)
    connections = (
        Connection.objects.filter(folder__in=_seen(user, Action.VIEW_CONNECTIONS, folder))
        .exclude(pk__in=held[Kind.CONNECTION])
        .select_related("folder")
        .order_by("folder__path", "name")
    )
    triggers = (
        Trigger.objects.filter(connection__folder__in=_seen(user, Action.VIEW_TRIGGERS, folder))
        .exclude(pk__in=held[Kind.TRIGGER])
        .select_related("connection", "process")
        .order_by("connection__folder__path", "connection__name", "pk")
    )
    processes = (
        Process.objects.filter(folder__in=_seen(user, Action.VIEW_PROCESSES, folder))
        .exclude(pk__in=held[Kind.PROCESS])
        .select_related("folder")
        .order_by("folder__path", "name")
    )
    return Candidates(
        connections=list(connections),
        triggers=list(triggers),
        processes=list(processes),
        required=required_connections(solution, held=held),
    )


def required_connections(solution: Solution, *, held=None) -> list[Connection]:
    """The connections the solution's processes require (bound to one, in
    the source folder or below) that are not components yet."""
    if solution.source_folder is None:
        return []
    held = held if held is not None else _held(solution)
    bound = ProcessConnection.objects.filter(
        process_id__in=held[Kind.PROCESS], connection__isnull=False
    ).values("connection_id")
    return list(
        Connection.objects.filter(pk__in=bound, folder__in=subtree(solution.source_folder))
        .exclude(pk__in=held[Kind.CONNECTION])
        .order_by("name")
    )


# --- Adding -------------------------------------------------------------------


def initial_properties(obj: Connection | Trigger | Process) -> dict[str, Any]:
    """A new component's properties: the object's values as they are."""
    if isinstance(obj, Connection):
        return {"name": obj.name, "description": obj.description, "auth_type": obj.auth_type}
    if isinstance(obj, Trigger):
        return {
            "filters": {k: str(v) for k, v in obj.filters.items()},
            "enabled": obj.enabled,
            "include_existing": obj.include_existing,
        }
    return {
        "name": obj.name,
        "description": obj.description,
        "webhook_url": obj.webhook_url,
        "job_queue": obj.job_queue,
    }


def _folder_of(obj: Connection | Trigger | Process) -> int:
    return obj.connection.folder_id if isinstance(obj, Trigger) else obj.folder_id


class _Adder:
    def __init__(self, solution: Solution):
        self.solution = solution
        self.held = _held(solution)
        self.inside = set(subtree(solution.source_folder).values_list("pk", flat=True))
        self.added: list[Component] = []

    def add(self, kind: str, obj) -> None:
        if obj.pk in self.held[kind]:
            return
        if _folder_of(obj) not in self.inside:
            raise ValidationError(
                {kind: f"{obj} is not in the solution's folder or a folder below it."}
            )
        self.held[kind].add(obj.pk)
        self.added.append(
            Component.objects.create(
                solution=self.solution,
                kind=kind,
                key=key_of(kind, obj.pk),
                properties=initial_properties(obj),
                **{kind: obj},
            )
        )
        if kind == Kind.TRIGGER:
            self.add(Kind.CONNECTION, obj.connection)
            self.add(Kind.PROCESS, obj.process)
        elif kind == Kind.PROCESS:
            for requirement in obj.requirements.select_related("connection"):
                connection = requirement.connection
                if connection is not None and connection.folder_id in self.inside:
                    self.add(Kind.CONNECTION, connection)


def add_components(
    solution: Solution,
    *,
    connections: Iterable[Connection] = (),
    triggers: Iterable[Trigger] = (),
    processes: Iterable[Process] = (),
    actor=None,
) -> list[Component]:
    """Add what was picked (with what it brings along); the components made.
    ValidationError naming an object outside the source folder: nothing is
    added then."""
    if solution.source_folder is None:
        raise ValidationError("The solution's source folder was deleted: nothing can be added.")
    with transaction.atomic():
        Solution.objects.select_for_update().filter(pk=solution.pk).first()
        adder = _Adder(solution)
        for trigger in triggers:
            adder.add(Kind.TRIGGER, trigger)
        for process in processes:
            adder.add(Kind.PROCESS, process)
        for connection in connections:
            adder.add(Kind.CONNECTION, connection)
        if adder.added:
            names = ", ".join(component.key for component in adder.added)
            _record(
                AuditRecord.Action.SOLUTION_EDITED, solution, actor=actor, detail=f"Added {names}."
            )
            solution.save(update_fields=["updated_at"])
    return adder.added


# --- Editing ------------------------------------------------------------------


def _text(values: dict, name: str, errors: dict, *, required: bool, limit: int) -> str:
    value = str(values.get(name) or "").strip()
    if required and not value:
        errors[name] = "Give it a name."
    elif len(value) > limit:
        errors[name] = f"Too long ({limit} characters at most)."
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "on", "yes"}
    return bool(value)


def object_of(component: Component):
    return getattr(component, component.kind)


def clean_properties(component: Component, values: dict[str, Any]) -> dict[str, Any]:
    """The component's properties from ``values`` (the properties not given
    keep theirs), validated as the connection and trigger pages validate
    them; ValidationError by property."""
    obj = object_of(component)
    if obj is None:
        raise ValidationError(f"{component.key} was deleted from its folder: remove it.")
    given = {**component.properties, **values}
    errors: dict[str, Any] = {}
    cleaned: dict[str, Any] = {}
    if component.kind == Kind.CONNECTION:
        cleaned["name"] = _text(given, "name", errors, required=True, limit=NAME_MAX)
        cleaned["description"] = _text(
            given, "description", errors, required=False, limit=DESCRIPTION_MAX
        )
        connector = get_catalog().get(obj.connector_key)
        offered = [auth.type for auth in connector.auth_types] if connector else [obj.auth_type]
        auth_type = str(given.get("auth_type") or "")
        if auth_type not in offered:
            name = connector.name if connector else obj.connector_key
            errors["auth_type"] = f"Choose one of {name}'s authentication types."
        cleaned["auth_type"] = auth_type
    elif component.kind == Kind.TRIGGER:
        connector = get_catalog().get(obj.connection.connector_key)
        event = connector.event(obj.event_key) if connector else None
        if event is None:
            raise ValidationError(f"The event of {component.key} is not in this portal's catalog.")
        filters = given.get("filters") or {}
        if not isinstance(filters, dict):
            errors["filters"] = "Filters are values by name."
        else:
            try:
                cleaned["filters"] = clean_filters(event, filters)
            except ValidationError as error:
                errors.update({f"filters.{k}": v for k, v in error.message_dict.items()})
        cleaned["enabled"] = _flag(given.get("enabled"))
        cleaned["include_existing"] = _flag(given.get("include_existing"))
        if cleaned["include_existing"] and not event.can_include_existing:
            errors["include_existing"] = f"{event.name} cannot include existing items."
    else:
        cleaned["name"] = _text(given, "name", errors, required=True, limit=NAME_MAX)
        cleaned["description"] = _text(
            given, "description", errors, required=False, limit=DESCRIPTION_MAX
        )
        cleaned["job_queue"] = _flag(given.get("job_queue"))
        try:
            cleaned["webhook_url"] = clean_webhook_url(str(given.get("webhook_url") or ""))
        except ValidationError as error:
            errors.update(error.message_dict)
        else:
            if not cleaned["webhook_url"] and not cleaned["job_queue"]:
                errors["webhook_url"] = (
                    "Give a webhook address, or let robots pull its jobs, or both."
                )
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_locked(component: Component, locked: Iterable[str]) -> list[str]:
    allowed = PROPERTIES[component.kind]
    locked = list(dict.fromkeys(locked))
    unknown = [name for name in locked if name not in allowed]
    if unknown:
        raise ValidationError(
            {"locked": f"{', '.join(unknown)}: not a property of {component.get_kind_display()}."}
        )
    return [name for name in allowed if name in locked]


def edit_component(
    component: Component,
    *,
    properties: dict[str, Any] | None = None,
    locked: Iterable[str] | None = None,
    actor=None,
) -> Component:
    """New property values and/or which are locked; ValidationError by
    property, nothing changed then."""
    cleaned = clean_properties(component, properties or {})
    locks = clean_locked(component, component.locked if locked is None else locked)
    if cleaned == component.properties and locks == component.locked:
        return component
    changed = [name for name in cleaned if cleaned[name] != component.properties.get(name)]
    component.properties, component.locked = cleaned, locks
    with transaction.atomic():
        component.save(update_fields=["properties", "locked"])
        component.solution.save(update_fields=["updated_at"])
        what = ", ".join(changed) if changed else "locks"
        _record(
            AuditRecord.Action.SOLUTION_EDITED,
            component.solution,
            actor=actor,
            detail=f"Edited {component.key}: {what}; locked: {', '.join(locks) or 'none'}.",
        )
    return component


def set_locked(component: Component, name: str, locked: bool, *, actor=None) -> Component:
    """Lock or unlock one property."""
    current = [n for n in component.locked if n != name] + ([name] if locked else [])
    locks = clean_locked(component, current)
    if locks == component.locked:
        return component
    component.locked = locks
    with transaction.atomic():
        component.save(update_fields=["locked"])
        word = "Locked" if locked else "Unlocked"
        _record(
            AuditRecord.Action.SOLUTION_EDITED,
            component.solution,
            actor=actor,
            detail=f"{word} {name} of {component.key}.",
        )
    return component


# --- Removing -----------------------------------------------------------------


def removal_impact(component: Component) -> list[Component]:
    """The trigger components that go with ``component`` (a connection or a
    process they need); for a trigger, none."""
    if component.kind == Kind.TRIGGER:
        return []
    filter_ = (
        Q(trigger__connection_id=component.connection_id)
        if component.kind == Kind.CONNECTION
        else Q(trigger__process_id=component.process_id)
    )
    pk = component.connection_id if component.kind == Kind.CONNECTION else component.process_id
    if pk is None:
        return []
    return list(component.solution.components.filter(filter_, kind=Kind.TRIGGER))


def remove_component(component: Component, *, actor=None) -> list[str]:
    """Remove the component (and the trigger components that need it); the keys removed."""
    going = [component, *removal_impact(component)]
    keys = [c.key for c in going]
    with transaction.atomic():
        Component.objects.filter(pk__in=[c.pk for c in going]).delete()
        component.solution.save(update_fields=["updated_at"])
        _record(
            AuditRecord.Action.SOLUTION_EDITED,
            component.solution,
            actor=actor,
            detail=f"Removed {', '.join(keys)}.",
        )
    return keys


def _record(action: str, solution: Solution, *, actor=None, detail: str = "") -> None:
    audit.record(
        action,
        actor=actor,
        folder_id=solution.source_folder_id,
        target=("solution", solution.pk, solution.name),
        detail=detail,
    )
