"""Bringing a transfer document in: first a plan (what would be created,
what is already there and left alone, what is refused and why), then, only
when nothing is refused, all of it in one transaction.

- Folders are matched by their path of names (as folder names are, any
  case), under ``under`` when given; missing ones are created.
- A connection is matched by its folder and name. One already there is left
  as it is, with its triggers. A new one is created Not yet connected,
  with no credential: credentials never move, someone authenticates it
  (its triggers are paused until then, by design).
- A process is matched by its folder and name; a new one with a webhook gets
  a new signing secret, returned once (``Imported.signing_secrets``).
- Everything is validated as the pages validate it: the connector and its
  auth type, the fields, the polling interval, the events and their filters,
  the webhook address, the processes and connections named. A refused
  entry refuses the import: nothing is written.

Running the same document again changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction

from connections.catalog import ConnectorSpec, get_catalog
from connections.catalog.events import clean_filters
from connections.catalog.schema import AuthKind
from connections.models import Connection, ConnectionEvent, ConnectionState, Process
from connections.oauth_apps import connectors_with_portal_app
from connections.transfer.format import ConnectionEntry, Document, ProcessEntry, TriggerEntry
from connections.triggers.configure import create_trigger
from connections.triggers.processes import clean_webhook_url, create_process
from connections.validation import (
    clean_fields,
    clean_name,
    clean_polling_interval,
    name_kept,
)
from portal import actions, audit
from portal.models import AuditRecord, Folder

StepAction = Literal["create", "exists", "refused"]
PathKey = tuple[str, ...]
SEPARATOR = " / "


def _key(path: list[str] | tuple[str, ...]) -> PathKey:
    return tuple(name.casefold() for name in path)


@dataclass
class Step:
    """One line of the plan. ``entry`` names where it is in the document
    ("connections[3]"; "" for a folder only implied by a path)."""

    kind: Literal["folder", "connection", "process", "trigger"]
    entry: str
    label: str
    action: StepAction
    note: str = ""
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        words = {"create": "create", "exists": "already there", "refused": "REFUSED"}
        text = f"{words[self.action]:<13} {self.kind:<10} {self.label}"
        if self.entry:
            text += f"  ({self.entry})"
        if self.note:
            text += f": {self.note}"
        for problem in self.problems:
            text += f"\n{'':14}{problem}"
        return text


@dataclass
class Plan:
    steps: list[Step]
    under: Folder | None = None

    @property
    def refused(self) -> list[Step]:
        return [step for step in self.steps if step.action == "refused"]

    @property
    def problems(self) -> list[str]:
        return [problem for step in self.refused for problem in step.problems]

    def count(self, action: StepAction, kind: str) -> int:
        return sum(1 for s in self.steps if s.action == action and s.kind == kind)

    def summary(self, *, done: bool = False) -> str:
        """ "Create 3 folders, 1 connection; 2 already there, left alone." (done: "Created")."""
        plurals = {"folder": "s", "connection": "s", "process": "es", "trigger": "s"}
        made = []
        for kind, plural in plurals.items():
            count = self.count("create", kind)
            if count:
                made.append(f"{count} {kind}{plural if count != 1 else ''}")
        verb = "Created " if done else "Create "
        text = (verb + ", ".join(made)) if made else "Nothing to create"
        kept = sum(1 for s in self.steps if s.action == "exists")
        if kept:
            text += f"; {kept} already there, left alone"
        if self.refused:
            text += f"; {len(self.refused)} refused"
        return text + "."

    def lines(self) -> list[str]:
        return [step.line() for step in self.steps]


class ImportRefused(Exception):
    """Something in the document is refused: nothing was written. ``plan``
    says what and where."""

    def __init__(self, plan: Plan):
        super().__init__("; ".join(plan.problems))
        self.plan = plan


@dataclass
class Imported:
    """What an import did: its plan, the connections made that someone must
    authenticate, and each new process's webhook signing secret (shown once,
    kept nowhere else in the clear)."""

    plan: Plan
    to_authenticate: list[Connection]
    signing_secrets: list[tuple[Process, str]]

    @property
    def summary(self) -> str:
        return self.plan.summary(done=True)


def path_text(path: list[str] | tuple[str, ...]) -> str:
    return SEPARATOR.join(path)


def find_folder(path: list[str], *, under: Folder | None = None) -> Folder | None:
    """The shared folder at ``path`` (names from the top, or from ``under``)."""
    folder = under
    for name in path:
        folder = Folder.objects.shared().filter(parent=folder, name__iexact=name.strip()).first()
        if folder is None:
            return None
    return folder


class _Planner:
    """Reads what is there (a few queries, whatever the document's size) and
    checks every entry against it and against the catalog."""

    def __init__(self, document: Document, under: Folder | None):
        self.document = document
        self.under = under
        self.catalog = get_catalog()
        self.steps: list[Step] = []
        self.base = list(under.ancestor_ids) if under else []
        self.prefix = folder_names(under) if under else []
        self.folders: dict[PathKey, Folder] = self._existing_folders()
        ids = [folder.pk for folder in self.folders.values()]
        self.connections: dict[tuple[PathKey, str], Connection] = {}
        folder_keys = {folder.pk: key for key, folder in self.folders.items()}
        for connection in Connection.objects.filter(folder_id__in=ids):
            path = folder_keys[connection.folder_id]
            self.connections[(path, connection.name.casefold())] = connection
        self.processes: set[tuple[PathKey, str]] = {
            (folder_keys[folder_id], name)
            for folder_id, name in Process.objects.filter(folder_id__in=ids).values_list(
                "folder_id", "name"
            )
        }
        # What the document adds: new connections (path, name) -> connector; new processes.
        self.new_connections: dict[tuple[PathKey, str], str] = {}
        self.new_processes: set[tuple[PathKey, str]] = set()

    def _existing_folders(self) -> dict[PathKey, Folder]:
        """Every shared folder below the place of import, by its path of
        names from there (one query)."""
        folders = Folder.objects.shared()
        if self.under is not None:
            folders = folders.filter(path__startswith=self.under.path).exclude(pk=self.under.pk)
        folders = list(folders.order_by("path"))
        by_pk = {folder.pk: folder for folder in folders}
        found: dict[PathKey, Folder] = {}
        for folder in folders:
            ids = folder.ancestor_ids[len(self.base) :]
            if all(pk in by_pk for pk in ids):
                found[_key([by_pk[pk].name for pk in ids])] = folder
        return found

    def where(self, path: list[str]) -> str:
        return path_text(self.prefix + list(path))

    # -- folders ---------------------------------------------------------------

    def plan_folders(self) -> None:
        described = {_key(e.path): (i, e) for i, e in enumerate(self.document.folders)}
        paths: dict[PathKey, list[str]] = {}
        for path in (
            [e.path for e in self.document.folders]
            + [e.folder for e in self.document.connections]
            + [e.folder for e in self.document.processes]
        ):
            for depth in range(1, len(path) + 1):
                paths.setdefault(_key(path[:depth]), list(path[:depth]))
        for key in sorted(paths, key=lambda k: (len(k), k)):
            index = described.get(key, (None,))[0]
            entry = f"folders[{index}]" if index is not None else ""
            action: StepAction = "exists" if key in self.folders else "create"
            self.steps.append(Step("folder", entry, self.where(paths[key]), action))

    # -- connections -----------------------------------------------------------

    def plan_connections(self) -> list[tuple[int, ConnectionEntry]]:
        """The connection steps (with their triggers'); the entries to create."""
        seen: set[tuple[PathKey, str]] = set()
        creating = []
        for index, entry in enumerate(self.document.connections):
            name = f"connections[{index}]"
            key = (_key(entry.folder), entry.name.casefold())
            label = f"{self.where(entry.folder)}: {entry.name}"
            if key in seen:
                problem = f"{name}.name: the file names {entry.name!r} twice in that folder"
                self.steps.append(Step("connection", name, label, "refused", problems=[problem]))
                continue
            seen.add(key)
            existing = self.connections.get(key)
            if existing is not None:
                note = "left as it is, with its triggers"
                if existing.connector_key != entry.connector:
                    note += f" (it is a {existing.connector_key} connection)"
                self.steps.append(Step("connection", name, label, "exists", note))
                continue
            connector, problems = self._check_connection(name, entry)
            self.new_connections[key] = entry.connector
            step = Step("connection", name, label, "refused" if problems else "create")
            step.problems = problems
            if connector and not problems:
                auth = connector.auth_type(entry.auth_type)
                step.note = f"{connector.name}, {auth.display_label}; Not yet connected"
                if self._needs_portal_app(entry) and connector.key not in self.portal_apps:
                    step.note += (
                        f". No OAuth 2.0 app is registered for {connector.name} in this "
                        "portal: register one (admin, Registered OAuth apps) before "
                        "authenticating it"
                    )
                creating.append((index, entry))
            self.steps.append(step)
        return creating

    @staticmethod
    def _needs_portal_app(entry: ConnectionEntry) -> bool:
        """Signs in with the portal's registered app (not its own)."""
        return entry.auth_type == AuthKind.OAUTH2_AUTHORIZATION_CODE and not entry.own_app

    @cached_property
    def portal_apps(self) -> set[str]:
        """The connectors of the document's sign-ins with the portal's app
        that have one registered here (one query)."""
        wanted = {e.connector for e in self.document.connections if self._needs_portal_app(e)}
        return connectors_with_portal_app(wanted) if wanted else set()

    def _check_connection(
        self, name: str, entry: ConnectionEntry
    ) -> tuple[ConnectorSpec | None, list[str]]:
        connector = self.catalog.get(entry.connector)
        if connector is None:
            return None, [f"{name}.connector: no connector {entry.connector!r} in this portal"]
        auth = connector.auth_type(entry.auth_type)
        if auth is None:
            offered = ", ".join(a.type.value for a in connector.auth_types)
            return connector, [
                f"{name}.auth_type: {connector.name} offers no {entry.auth_type.value} "
                f"(it offers {offered})"
            ]
        problems = []
        if entry.own_app and (auth.type != AuthKind.OAUTH2_AUTHORIZATION_CODE or not auth.byoa):
            problems.append(
                f"{name}.own_app: {connector.name} takes no own OAuth 2.0 app with "
                f"{entry.auth_type.value}"
            )
        declared = connector.field_map(auth.type)
        for key in entry.fields:
            if key not in declared:
                problems.append(
                    f"{name}.fields.{key}: not a field of {connector.name} ({auth.display_label})"
                )
        try:
            clean_fields(connector, auth, entry.fields)
        except ValidationError as error:
            for key, messages in error.message_dict.items():
                problems.append(f"{name}.fields.{key}: {' '.join(messages)}")
        try:
            clean_polling_interval(entry.polling_interval_seconds)
        except ValidationError as error:
            for messages in error.message_dict.values():
                problems.append(f"{name}.polling_interval_seconds: {' '.join(messages)}")
        return connector, problems

    # -- processes -------------------------------------------------------------

    def plan_processes(self) -> list[tuple[int, ProcessEntry]]:
        seen: set[tuple[PathKey, str]] = set()
        creating = []
        for index, entry in enumerate(self.document.processes):
            name = f"processes[{index}]"
            key = (_key(entry.folder), entry.name)
            label = f"{self.where(entry.folder)}: {entry.name}"
            if key in seen:
                problem = f"{name}.name: the file names {entry.name!r} twice in that folder"
                self.steps.append(Step("process", name, label, "refused", problems=[problem]))
                continue
            seen.add(key)
            self.new_processes.add(key)
            if key in self.processes:
                self.steps.append(Step("process", name, label, "exists", "left as it is"))
                continue
            problems = self._check_process(name, entry)
            step = Step("process", name, label, "refused" if problems else "create")
            step.problems = problems
            if entry.webhook_url and not problems:
                step.note = "a new webhook signing secret is made"
            if not problems:
                creating.append((index, entry))
            self.steps.append(step)
        return creating

    def _check_process(self, name: str, entry: ProcessEntry) -> list[str]:
        problems = []
        try:
            clean_webhook_url(entry.webhook_url)
        except ValidationError as error:
            problems += [f"{name}.webhook_url: {' '.join(m)}" for m in error.message_dict.values()]
        if not entry.webhook_url and not entry.job_queue:
            problems.append(
                f"{name}.webhook_url: give a webhook address, or job_queue true, or both"
            )
        folder = _key(entry.folder)
        connectors: set[str] = set()
        for i, requirement in enumerate(entry.required_connectors):
            where = f"{name}.required_connectors[{i}]"
            if requirement.connector in connectors:
                problems.append(f"{where}.connector: {requirement.connector} is named twice")
            connectors.add(requirement.connector)
            if self.catalog.get(requirement.connector) is None:
                problems.append(
                    f"{where}.connector: no connector {requirement.connector!r} in this portal"
                )
            elif requirement.connection is not None:
                wanted = (folder, requirement.connection.casefold())
                existing = self.connections.get(wanted)
                connector = existing.connector_key if existing else self.new_connections.get(wanted)
                if connector != requirement.connector:
                    problems.append(
                        f"{where}.connection: no {requirement.connector} connection named "
                        f"{requirement.connection!r} in {self.where(entry.folder)}"
                    )
        return problems

    # -- triggers --------------------------------------------------------------

    def plan_triggers(self, connections: list[tuple[int, ConnectionEntry]]) -> None:
        """The triggers of the connections to create (those of a connection
        already there are left alone with it)."""
        for index, entry in connections:
            connector = self.catalog.get(entry.connector)
            for t, trigger in enumerate(entry.triggers):
                name = f"connections[{index}].triggers[{t}]"
                label = (
                    f"{self.where(entry.folder)}: {entry.name}: {trigger.event} "
                    f"starts {trigger.process}"
                )
                problems = self._check_trigger(name, entry, connector, trigger)
                step = Step("trigger", name, label, "refused" if problems else "create")
                step.problems = problems
                if not problems:
                    step.note = "paused until the connection is authenticated"
                self.steps.append(step)

    def _check_trigger(
        self, name: str, entry: ConnectionEntry, connector: ConnectorSpec, trigger: TriggerEntry
    ) -> list[str]:
        event = connector.event(trigger.event)
        if event is None:
            return [f"{name}.event: {connector.name} has no event {trigger.event!r}"]
        problems = []
        declared = {spec.key for spec in event.filters}
        problems += [
            f"{name}.filters.{key}: not a filter of {event.name}"
            for key in trigger.filters
            if key not in declared
        ]
        try:
            clean_filters(event, trigger.filters)
        except ValidationError as error:
            for key, messages in error.message_dict.items():
                problems.append(f"{name}.filters.{key}: {' '.join(messages)}")
        if trigger.include_existing and not event.can_include_existing:
            problems.append(f"{name}.include_existing: {event.name} cannot include existing items")
        if (_key(entry.folder), trigger.process) not in self.processes | self.new_processes:
            problems.append(
                f"{name}.process: no process named {trigger.process!r} in "
                f"{self.where(entry.folder)}"
            )
        return problems


def plan_import(document: Document, *, under: Folder | None = None) -> Plan:
    """What importing ``document`` (under the shared folder ``under``, or at
    the top) would do. Reads only."""
    if under is not None and under.is_personal:
        raise ValueError("Import into shared folders only.")
    planner = _Planner(document, under)
    planner.plan_folders()
    connections = planner.plan_connections()
    planner.plan_processes()
    planner.plan_triggers(connections)
    return Plan(planner.steps, under)


class _Writer:
    """Carries a plan out; every write goes through the function the pages use."""

    def __init__(self, document: Document, under: Folder | None, actor):
        self.document = document
        self.under = under
        self.actor = actor
        self.folders: dict[PathKey, Folder] = {}
        self.to_authenticate: list[Connection] = []
        self.signing_secrets: list[tuple[Process, str]] = []

    def folder(self, path: list[str], description: str = "") -> Folder:
        key = _key(path)
        if key not in self.folders:
            parent = self.folder(path[:-1]) if len(path) > 1 else self.under
            found = find_folder(path[-1:], under=parent)
            self.folders[key] = found or actions.create_folder(
                name=path[-1], parent=parent, description=description
            )
        return self.folders[key]

    def connection(self, entry: ConnectionEntry) -> Connection:
        folder = self.folder(entry.folder)
        connector = get_catalog().get(entry.connector)
        default = (
            entry.default
            and not Connection.objects.filter(
                folder=folder, connector_key=connector.key, is_default=True
            ).exists()
        )
        connection = create_unconnected_connection(
            folder=folder,
            connector=connector,
            auth_type=entry.auth_type,
            name=entry.name,
            description=entry.description,
            own_app=entry.own_app,
            is_default=default,
            fields=entry.fields,
            polling_interval_seconds=entry.polling_interval_seconds,
            actor=self.actor,
            detail="Imported: not yet connected; authenticate it to use it.",
        )
        self.to_authenticate.append(connection)
        return connection

    def process(self, entry: ProcessEntry) -> None:
        folder = self.folder(entry.folder)
        requirements = {
            r.connector: (
                Connection.objects.get(
                    folder=folder, connector_key=r.connector, name__iexact=r.connection
                )
                if r.connection
                else None
            )
            for r in entry.required_connectors
        }
        made = create_process(
            folder=folder,
            name=entry.name,
            description=entry.description,
            webhook_url=entry.webhook_url,
            job_queue=entry.job_queue,
            requirements=requirements,
            created_by=self.actor,
        )
        if made.signing_secret:
            self.signing_secrets.append((made.process, made.signing_secret))

    def trigger(self, connection: Connection, entry: TriggerEntry) -> None:
        create_trigger(
            connection=connection,
            event_key=entry.event,
            filters=dict(entry.filters),
            process=Process.objects.get(folder=connection.folder, name=entry.process),
            include_existing=entry.include_existing,
            enabled=entry.enabled,
            created_by=self.actor,
        )


def create_unconnected_connection(
    *,
    folder: Folder,
    connector: ConnectorSpec,
    auth_type: AuthKind | str,
    name: str,
    description: str = "",
    own_app: bool = False,
    is_default: bool = False,
    fields: dict,
    polling_interval_seconds: int,
    actor,
    detail: str,
) -> Connection:
    """A connection made from a definition (an import, a solution's
    deployment): Not yet connected, no credential, nobody has authenticated
    it yet ("System"), so its triggers are paused until someone does. The
    fields and interval are cleaned as the pages clean them; the name is
    kept unique in the folder (ValidationError when it is taken)."""
    auth = connector.auth_type(auth_type)
    name = clean_name(folder, name)
    with name_kept(folder, name), transaction.atomic():
        connection = Connection.objects.create(
            folder=folder,
            connector_key=connector.key,
            name=name,
            description=(description or "").strip(),
            auth_type=auth.type,
            own_app=own_app,
            is_default=is_default,
            fields=clean_fields(connector, auth, fields),
            state=ConnectionState.NOT_CONNECTED,
            polling_interval_seconds=clean_polling_interval(polling_interval_seconds),
            created_by=actor,
        )
        ConnectionEvent.objects.create(
            connection=connection, kind=ConnectionEvent.Kind.CREATED, actor=actor, detail=detail
        )
    return connection


def import_connections(
    document: Document, *, under: Folder | None = None, actor=None, dry_run: bool = False
) -> Imported:
    """Plan the import, then (unless ``dry_run``) carry it out in one
    transaction, audited. ``ImportRefused`` when anything is refused:
    nothing is written then."""
    plan = plan_import(document, under=under)
    if plan.refused:
        raise ImportRefused(plan)
    if dry_run:
        return Imported(plan, [], [])
    writer = _Writer(document, under, actor)
    creating = {s.entry for s in plan.steps if s.action == "create"}
    with transaction.atomic():
        for entry in sorted(document.folders, key=lambda e: len(e.path)):
            writer.folder(entry.path, entry.description)
        made: dict[int, Connection] = {}
        for index, entry in enumerate(document.connections):
            writer.folder(entry.folder)
            if f"connections[{index}]" in creating:
                made[index] = writer.connection(entry)
        for index, entry in enumerate(document.processes):
            writer.folder(entry.folder)
            if f"processes[{index}]" in creating:
                writer.process(entry)
        for index, connection in made.items():
            for entry in document.connections[index].triggers:
                writer.trigger(connection, entry)
        where = f" under {path_text(folder_names(under))}" if under else ""
        audit.record(
            AuditRecord.Action.CONNECTIONS_IMPORTED,
            actor=actor,
            folder=under,
            detail=f"Imported{where}: {plan.summary(done=True)}",
        )
    return Imported(plan, writer.to_authenticate, writer.signing_secrets)


def folder_names(folder: Folder) -> list[str]:
    names = dict(Folder.objects.filter(pk__in=folder.ancestor_ids).values_list("pk", "name"))
    return [names[pk] for pk in folder.ancestor_ids]


def folder_at(text: str) -> Folder:
    """The shared folder named by "Finance/Payables" (names from the top,
    separated by "/"); ``Folder.DoesNotExist`` when there is none."""
    names = [name.strip() for name in text.split("/") if name.strip()]
    folder = find_folder(names) if names else None
    if folder is None:
        raise Folder.DoesNotExist(f"No shared folder {path_text(names) or text!r}.")
    return folder
