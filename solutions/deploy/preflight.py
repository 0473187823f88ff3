"""Preflight: what deploying a version (or upgrading a deployment, editing
its configuration, removing it) would do, and what would not work, before
anything is written. Reads only.

The plan is a list of ``PlannedStep`` (the steps the engine records and
runs, with their arguments), each with the word the page shows for it:
create, link, require (chosen at run time), update, delete, leave (left
alone). The problems name where they are (``connections.connection-12.link``)
and whether they block: a connector missing from this portal's catalog, an
auth type the connector lacks, fields or filters it refuses, a linked
connection the deployer may not use or of another connector, a trigger's
scopes the linked connection was not granted, a folder the deployer may
not create in, a name taken in the target folder, a locked property
changed. A linked connection that is not healthy is a warning: it deploys,
and its triggers wait until it is reconnected."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from django.core.exceptions import ValidationError

from connections.catalog import get_catalog
from connections.catalog.events import clean_filters, missing_scopes
from connections.catalog.schema import AuthKind
from connections.models import Connection, ConnectionState, Process
from connections.oauth_apps import connectors_with_portal_app
from connections.transfer.import_ import find_folder
from connections.triggers.configure import granted_scopes
from connections.triggers.processes import clean_webhook_url
from connections.validation import clean_fields, clean_polling_interval
from portal.models import Folder
from portal.permissions import Action, can, folders_where, is_tenant_admin
from solutions.models import DeployedItem, Deployment, SolutionVersion
from solutions.package import (
    ConnectionChoice,
    ConnectionComponent,
    DeploymentSettings,
    Package,
    ProcessChoice,
    ProcessComponent,
    TriggerChoice,
    TriggerComponent,
)
from solutions.package import validate as validate_package

Mode = Literal["deploy", "upgrade", "edit", "remove"]
Verb = Literal["create", "link", "require", "update", "delete", "leave"]
HEALTHY = {ConnectionState.CONNECTED, ConnectionState.DEGRADED}
AUTH_LABELS = dict(DeployedItem.AuthChoice.choices)


def split_path(text: str) -> list[str]:
    """ "Shared/Finance/Invoices" as its names (blank parts dropped)."""
    return [name.strip() for name in (text or "").split("/") if name.strip()]


def linkable_connections(user):
    """The connections a deployer may link: those of the folders where they
    hold Connections - Use (what the deployed processes will do with them)."""
    return Connection.objects.filter(
        folder__in=folders_where(user, Action.USE_CONNECTIONS).values("pk")
    )


def nearest_existing(names: list[str]) -> tuple[Folder | None, int]:
    """The deepest existing shared folder along ``names`` and how many names
    it covers (0: none, the path starts a new top-level folder)."""
    folder, depth = None, 0
    for name in names:
        found = Folder.objects.shared().filter(parent=folder, name__iexact=name).first()
        if found is None:
            break
        folder, depth = found, depth + 1
    return folder, depth


def may_deploy_into(user, names: list[str]) -> bool:
    """Solutions - Deploy on the folder, or on its nearest existing ancestor
    when it does not exist yet (a new top-level folder: tenant administrators)."""
    anchor, _ = nearest_existing(names)
    if anchor is None:
        return is_tenant_admin(user)
    return can(user, Action.DEPLOY_SOLUTIONS, anchor)


def may_create_folders_under(user, parent: Folder | None) -> bool:
    """Creating folders needs Folder - Manage access on the parent (the top
    level: tenant administrators)."""
    if parent is None:
        return is_tenant_admin(user)
    return can(user, Action.MANAGE_FOLDER_ACCESS, parent)


@dataclass
class Problem:
    where: str
    message: str
    blocking: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class PlannedStep:
    action: str
    component: str
    verb: Verb
    label: str
    args: dict = field(default_factory=dict)
    note: str = ""


@dataclass
class Preflight:
    mode: Mode
    folder_path: str
    steps: list[PlannedStep]
    problems: list[Problem]
    settings: DeploymentSettings | None = None

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.blocking]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.blocking]

    @property
    def ok(self) -> bool:
        return not self.blocking

    def shown(self) -> list[PlannedStep]:
        """The lines a person reads (the bookkeeping steps left out)."""
        return [s for s in self.steps if s.action != "begin"]

    def count(self, verb: str) -> int:
        return sum(1 for s in self.shown() if s.verb == verb)

    def summary(self) -> str:
        words = {
            "create": "create",
            "link": "link",
            "require": "leave to choose at run time",
            "update": "update",
            "delete": "delete",
            "leave": "leave alone",
        }
        parts = [f"{words[v]} {self.count(v)}" for v in words if self.count(v)]
        text = ", ".join(parts) if parts else "nothing to do"
        return text[0].upper() + text[1:] + "."

    def as_dict(self) -> dict:
        return {
            "folder": self.folder_path,
            "ok": self.ok,
            "summary": self.summary(),
            "plan": [
                {
                    "action": s.verb,
                    "step": s.action,
                    "component": s.component,
                    "label": s.label,
                    "note": s.note,
                }
                for s in self.shown()
            ],
            "problems": [
                {"where": p.where, "message": p.message, "blocking": p.blocking}
                for p in self.problems
            ],
        }


def manifest_of(version: SolutionVersion) -> Package:
    return validate_package(version.manifest)


def current_choices(deployment: Deployment) -> dict[str, DeployedItem]:
    return {item.component: item for item in deployment.items.all()}


class _Planner:
    def __init__(
        self,
        *,
        mode: Mode,
        package: Package,
        settings: DeploymentSettings,
        user,
        deployment: Deployment | None,
        old: Package | None,
    ):
        self.mode = mode
        self.package = package
        self.settings = settings
        self.user = user
        self.deployment = deployment
        self.old = old
        self.catalog = get_catalog()
        self.steps: list[PlannedStep] = []
        self.problems: list[Problem] = []
        self.items = current_choices(deployment) if deployment else {}
        self.root = split_path(settings.folder)
        # Connection component -> (auth choice, the connection object or None).
        self.bound: dict[str, tuple[str, Connection | None]] = {}
        self.rebound: set[str] = set()
        self.new_names: dict[tuple[tuple[str, ...], str], str] = {}

    def problem(self, where: str, message: str, *, blocking: bool = True) -> None:
        self.problems.append(Problem(where, message, blocking))

    def add(self, action, component, verb, label, args=None, note="") -> None:
        self.steps.append(PlannedStep(action, component, verb, label, args or {}, note))

    def where(self, relative: list[str]) -> str:
        return "/".join(self.root + list(relative))

    # -- folders -------------------------------------------------------------

    def folders(self) -> None:
        if not self.root:
            self.problem("folder", "Name the folder to deploy into, e.g. Finance/Invoices.")
            return
        anchor, depth = nearest_existing(self.root)
        if self.mode == "deploy" and not may_deploy_into(self.user, self.root):
            self.problem(
                "folder",
                "You do not have Solutions - Deploy in "
                + (f"{'/'.join(self.root[:depth])}." if anchor else "a new top-level folder."),
            )
        paths = {tuple(self.root)}
        for component in [*self.package.connections, *self.package.processes]:
            for d in range(1, len(component.folder) + 1):
                paths.add(tuple(self.root + component.folder[:d]))
        for d in range(1, len(self.root)):
            paths.add(tuple(self.root[:d]))
        missing = sorted(
            (p for p in paths if find_folder(list(p)) is None), key=lambda p: (len(p), p)
        )
        for path in missing:
            self.add(
                "create_folder", "", "create", f"Folder {'/'.join(path)}", {"path": list(path)}
            )
        if missing and not may_create_folders_under(self.user, anchor):
            where = "/".join(self.root[:depth]) if anchor else "the top level"
            self.problem(
                "folder",
                f"{'/'.join(missing[0])} does not exist and you may not create folders in "
                f"{where}: that needs Folder - Manage access there (or a tenant administrator).",
            )
        elif self.mode == "deploy" and not missing:
            self.add("", "", "leave", f"Folder {'/'.join(self.root)}", note="exists")

    def folder(self, relative: list[str]) -> Folder | None:
        return find_folder(self.root + list(relative))

    # -- connections ---------------------------------------------------------

    def connections(self) -> None:
        links = {
            c.link
            for c in self.settings.connections.values()
            if c.auth == "link_existing" and c.link
        }
        allowed = linkable_connections(self.user).filter(pk__in=links).in_bulk()
        for component in self.package.connections:
            choice = self.settings.connections.get(component.key)
            item = self.items.get(component.key)
            if choice is None and item is not None:
                # Not named in an upgrade: it stays as deployed.
                link = item.object_id if item.auth_choice == "link_existing" else None
                choice = ConnectionChoice(auth=item.auth_choice, link=link)
                if link:
                    allowed.setdefault(link, Connection.objects.filter(pk=link).first())
            self.connection(component, choice or ConnectionChoice(), allowed)
        for key, item in self.items.items():
            if item.kind == "connection" and key not in {c.key for c in self.package.connections}:
                self.release(item, "the new version does not use it")

    def _locks(self, where: str, locked, given: dict, package: dict) -> None:
        for name in locked:
            if given.get(name) is not None and given[name] != package[name]:
                self.problem(f"{where}.{name}", f"{name} is locked by the solution's author.")

    def connection(self, component, choice: ConnectionChoice, allowed: dict) -> None:
        key = component.key
        where = f"connections.{key}"
        self._locks(
            where,
            [n for n in component.locked if n != "auth_type"],
            {"name": choice.name, "description": choice.description},
            {"name": component.name, "description": component.description},
        )
        if "auth_type" in component.locked and choice.auth != "authenticate_after":
            self.problem(
                f"{where}.auth",
                "The Authentication type is locked by the solution's author: "
                "Authenticate after deployment is done.",
            )
        item = self.items.get(key)
        if (
            self.mode == "edit"
            and item is not None
            and (
                choice.auth != item.auth_choice
                or (choice.auth == "link_existing" and choice.link != item.object_id)
            )
        ):
            self.problem(
                f"{where}.auth",
                "Edit deployment configuration does not change the Authentication type or "
                "link a connection: upgrade the deployment to do that.",
            )
        connector = self.catalog.get(component.connector)
        if connector is None:
            self.problem(
                f"{where}.connector",
                f"No connector {component.connector!r} in this portal's catalog.",
            )
        name = choice.name or component.name
        description = component.description if choice.description is None else choice.description
        label = f"Connection {name} ({connector.name if connector else component.connector})"
        if item is not None and self._same_binding(item, choice):
            self.keep(item, component, connector, name, description, label)
            return
        if item is not None:
            self.release(item, f"replaced by {AUTH_LABELS[choice.auth]}")
            self.rebound.add(key)
        if choice.auth == "configurable":
            self.bound[key] = ("configurable", None)
            self.add(
                "require_connection",
                key,
                "require",
                label,
                {"connector": component.connector},
                "Configurable by users: chosen at run time (the folder's connection of the "
                "connector, or its default)",
            )
        elif choice.auth == "link_existing":
            self.link(component, choice, allowed, connector, label)
        else:
            self.create(component, connector, name, description, label)

    def _same_binding(self, item: DeployedItem, choice: ConnectionChoice) -> bool:
        if item.auth_choice != choice.auth:
            return False
        return choice.auth != "link_existing" or item.object_id == choice.link

    def keep(self, item, component, connector, name, description, label) -> None:
        connection = Connection.objects.filter(pk=item.object_id).first()
        self.bound[component.key] = (item.auth_choice, connection)
        if (
            item.created
            and connection is not None
            and (connection.name, connection.description) != (name, description)
        ):
            folder = connection.folder
            if (
                Connection.objects.filter(folder=folder, name__iexact=name)
                .exclude(pk=connection.pk)
                .exists()
            ):
                self.problem(
                    f"connections.{component.key}.name",
                    f"A connection named {name!r} already exists in {folder.name}.",
                )
            self.add(
                "update_connection",
                component.key,
                "update",
                label,
                {"name": name, "description": description},
                f"was {connection.name}",
            )
            return
        note = AUTH_LABELS.get(item.auth_choice, "")
        self.add("", component.key, "leave", label, note=note)

    def release(self, item: DeployedItem, why: str) -> None:
        connection = Connection.objects.filter(pk=item.object_id).first()
        name = connection.name if connection else item.component
        note = f"{why}; it stays" if connection else why
        self.add("release_connection", item.component, "leave", f"Connection {name}", {}, note)

    def link(self, component, choice, allowed, connector, label) -> None:
        where = f"connections.{component.key}.link"
        connection = allowed.get(choice.link) if choice.link else None
        self.bound[component.key] = ("link_existing", connection)
        if choice.link is None:
            self.problem(where, "Choose the connection to link.")
            return
        if connection is None:
            self.problem(
                where,
                f"No connection {choice.link} you may use: link a connection of a folder where "
                "you hold Connections - Use.",
            )
            return
        if connection.connector_key != component.connector:
            self.problem(
                where,
                f"{connection.name} is a {connection.connector_key} connection, not a "
                f"{component.connector} one.",
            )
        if not connection.is_enabled or connection.state not in HEALTHY:
            state = "disabled" if not connection.is_enabled else connection.get_state_display()
            self.problem(
                where,
                f"{connection.name} is {state}: its triggers wait until it works again.",
                blocking=False,
            )
        self.add(
            "link_connection",
            component.key,
            "link",
            f"Connection {connection.name} ({connector.name if connector else ''})",
            {"connection": connection.pk, "connector": component.connector},
            "Link to existing: it stays where it is",
        )

    def create(self, component, connector, name, description, label) -> None:
        key = component.key
        where = f"connections.{key}"
        self.bound[key] = ("authenticate_after", None)
        folder_key = (tuple(self.root + component.folder), name.casefold())
        if folder_key in self.new_names:
            self.problem(f"{where}.name", f"{name!r} is named twice in that folder.")
        self.new_names[folder_key] = key
        folder = self.folder(component.folder)
        if (
            folder is not None
            and Connection.objects.filter(folder=folder, name__iexact=name).exists()
        ):
            self.problem(
                f"{where}.name",
                f"A connection named {name!r} already exists in {self.where(component.folder)}.",
            )
        if connector is not None:
            auth = connector.auth_type(component.auth_type)
            if auth is None:
                offered = ", ".join(a.type.value for a in connector.auth_types)
                self.problem(
                    f"{where}.auth_type",
                    f"{connector.name} offers no {component.auth_type.value} "
                    f"(it offers {offered}).",
                )
            else:
                try:
                    clean_fields(connector, auth, component.fields)
                except ValidationError as error:
                    for name_, messages in error.message_dict.items():
                        self.problem(f"{where}.fields.{name_}", " ".join(messages))
                if (
                    auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE
                    and not component.own_app
                    and not connectors_with_portal_app({connector.key})
                ):
                    self.problem(
                        f"{where}.auth_type",
                        f"No OAuth 2.0 app is registered for {connector.name} in this portal: "
                        "register one (admin, Registered OAuth apps) before authenticating "
                        "the connection.",
                        blocking=False,
                    )
        try:
            clean_polling_interval(component.polling_interval_seconds)
        except ValidationError as error:
            for messages in error.message_dict.values():
                self.problem(f"{where}.polling_interval_seconds", " ".join(messages))
        self.add(
            "create_connection",
            key,
            "create",
            label,
            {
                "folder": list(component.folder),
                "connector": component.connector,
                "auth_type": component.auth_type.value,
                "name": name,
                "description": description,
                "own_app": component.own_app,
                "fields": dict(component.fields),
                "polling_interval_seconds": component.polling_interval_seconds,
            },
            "Authenticate after deployment is done: Not yet connected, its triggers paused "
            "until someone authenticates it",
        )

    # -- processes -----------------------------------------------------------

    def processes(self) -> None:
        for component in self.package.processes:
            choice = self.settings.processes.get(component.key) or ProcessChoice()
            self.process(component, choice)
        kept = {p.key for p in self.package.processes}
        for key, item in self.items.items():
            if item.kind == "process" and key not in kept and item.created:
                process = Process.objects.filter(pk=item.object_id).first()
                if process is not None:
                    self.add(
                        "delete_process",
                        key,
                        "delete",
                        f"Process {process.name}",
                        note="the new version does not have it",
                    )

    def process(self, component: ProcessComponent, choice: ProcessChoice) -> None:
        key = component.key
        where = f"processes.{key}"
        given = choice.model_dump()
        package = {n: getattr(component, n) for n in given}
        self._locks(where, component.locked, given, package)
        values = {n: package[n] if given[n] is None else given[n] for n in given}
        try:
            clean_webhook_url(values["webhook_url"])
        except ValidationError as error:
            for messages in error.message_dict.values():
                self.problem(f"{where}.webhook_url", " ".join(messages))
        if not values["webhook_url"] and not values["job_queue"]:
            self.problem(f"{where}.webhook_url", "Give a webhook address, or a job queue, or both.")
        requires = {}
        for i, requirement in enumerate(component.requires):
            if self.catalog.get(requirement.connector) is None:
                self.problem(
                    f"{where}.requires[{i}].connector",
                    f"No connector {requirement.connector!r} in this portal's catalog.",
                )
            requires[requirement.connector] = requirement.connection
        args = {**values, "folder": list(component.folder), "requires": requires}
        label = f"Process {values['name']}"
        item = self.items.get(key)
        existing = Process.objects.filter(pk=item.object_id).first() if item else None
        folder = self.folder(component.folder)
        clash = folder and Process.objects.filter(folder=folder, name=values["name"])
        if existing is not None:
            clash = clash and clash.exclude(pk=existing.pk)
        if clash and clash.exists():
            self.problem(
                f"{where}.name",
                f"A process named {values['name']!r} already exists in "
                f"{self.where(component.folder)}.",
            )
        if existing is None:
            note = "a webhook signing secret is made" if values["webhook_url"] else ""
            self.add("create_process", key, "create", label, args, note)
            return
        now = {
            "name": existing.name,
            "description": existing.description,
            "webhook_url": existing.webhook_url,
            "job_queue": existing.job_queue,
        }
        changed = [n for n in now if now[n] != values[n]]
        rebinds = any(r.connection in self.rebound for r in component.requires)
        if changed or rebinds or self.mode == "upgrade":
            self.add("update_process", key, "update", label, args, ", ".join(changed))
        else:
            self.add("", key, "leave", label)

    # -- triggers ------------------------------------------------------------

    def triggers(self) -> None:
        connections = {c.key: c for c in self.package.connections}
        for component in self.package.triggers:
            choice = self.settings.triggers.get(component.key) or TriggerChoice()
            self.trigger(component, choice, connections[component.connection])
        kept = {t.key for t in self.package.triggers}
        for key, item in self.items.items():
            if item.kind == "trigger" and key not in kept and item.created:
                self.add(
                    "delete_trigger",
                    key,
                    "delete",
                    f"Event trigger {key}",
                    note="the new version does not have it",
                )

    def trigger(
        self, component: TriggerComponent, choice: TriggerChoice, connection: ConnectionComponent
    ) -> None:
        key = component.key
        where = f"triggers.{key}"
        given = choice.model_dump()
        package = {n: getattr(component, n) for n in given}
        self._locks(where, component.locked, given, package)
        values = {n: package[n] if given[n] is None else given[n] for n in given}
        connector = self.catalog.get(connection.connector)
        event = connector.event(component.event) if connector else None
        label = f"Event trigger {component.event} on {connection.name}"
        if connector is not None and event is None:
            self.problem(f"{where}.event", f"{connector.name} has no event {component.event!r}.")
        if event is not None:
            label = f"Event trigger {event.name} on {connection.name}"
            try:
                values["filters"] = clean_filters(event, values["filters"])
            except ValidationError as error:
                for name, messages in error.message_dict.items():
                    self.problem(f"{where}.filters.{name}", " ".join(messages))
            if values["include_existing"] and not event.can_include_existing:
                self.problem(
                    f"{where}.include_existing", f"{event.name} cannot include existing items."
                )
        auth, bound = self.bound.get(connection.key, ("", None))
        item = self.items.get(key)
        if auth == "configurable":
            if item is not None and item.created:
                self.add(
                    "delete_trigger",
                    key,
                    "delete",
                    label,
                    note="its connection is now configurable by users",
                )
            else:
                self.add(
                    "", key, "leave", label,
                    note="not created: its connection is configurable by users; add it once "
                    "a connection is chosen",
                )  # fmt: skip
            return
        if auth == "link_existing" and bound is not None and event is not None and connector:
            spec = connector.auth_type(bound.auth_type)
            granted = granted_scopes(bound) if spec and spec.oauth2 and event.scopes else None
            lacking = missing_scopes(event, spec, granted) if granted is not None else []
            if lacking:
                self.problem(
                    f"{where}.connection",
                    f"{bound.name} was not granted {', '.join(lacking)}, which {event.name} "
                    "needs: reconnect it with those scopes granted, or choose another.",
                )
        args = {
            "connection": component.connection,
            "process": component.process,
            "event": component.event,
            **values,
        }
        if item is not None and connection.key not in self.rebound:
            self.add("update_trigger", key, "update", label, args, "keeps its cursor")
            return
        if item is not None and item.created:
            self.add(
                "delete_trigger", key, "delete", label, {"now": True},
                note="moved to the new connection",
            )  # fmt: skip
        note = "paused until the connection is authenticated" if auth != "link_existing" else ""
        self.add("create_trigger", key, "create", label, args, note)


def preflight(
    version: SolutionVersion,
    settings: DeploymentSettings,
    user,
    *,
    deployment: Deployment | None = None,
    mode: Mode = "deploy",
) -> Preflight:
    """What deploying ``version`` with ``settings`` would do (``deployment``
    and ``mode``: an upgrade of it, or an edit of its configuration)."""
    package = manifest_of(version)
    if deployment is not None:
        # An upgrade or edit stays in the deployment's folder.
        settings = settings.model_copy(update={"folder": deployment.folder_path})
    old = manifest_of(deployment.version) if deployment is not None else None
    planner = _Planner(
        mode=mode, package=package, settings=settings, user=user, deployment=deployment, old=old
    )
    planner.add("begin", "", "leave", "", {"mode": mode})
    planner.folders()
    planner.connections()
    planner.processes()
    planner.triggers()
    # Deletions last: everything new is in place before anything goes.
    steps = planner.steps
    last = [s for s in steps if s.verb == "delete" and not s.args.get("now")]
    ordered = [s for s in steps if s not in last] + last
    return Preflight(mode, "/".join(planner.root), ordered, planner.problems, settings)


def removal_plan(deployment: Deployment) -> Preflight:
    """What removing the deployment does: its triggers and processes go, the
    connections stay (named), folders it made go when nothing is left in them."""
    steps = [PlannedStep("begin", "", "leave", "", {"mode": "remove"})]
    items = list(deployment.items.all())
    connections = Connection.objects.in_bulk(
        [i.object_id for i in items if i.kind == "connection" and i.object_id]
    )
    processes = Process.objects.in_bulk(
        [i.object_id for i in items if i.kind == "process" and i.object_id]
    )
    for item in items:
        if item.kind == "trigger" and item.created:
            steps.append(PlannedStep("delete_trigger", item.component, "delete", "Event trigger"))
    for item in items:
        if item.kind == "process" and item.created and item.object_id in processes:
            name = processes[item.object_id].name
            steps.append(PlannedStep("delete_process", item.component, "delete", f"Process {name}"))
    for item in items:
        if item.kind == "connection":
            connection = connections.get(item.object_id)
            if connection is not None:
                note = "stays (connections are never deleted by a removal)"
                label = f"Connection {connection.name}"
            else:
                note, label = "nothing to keep: it was configurable by users", item.component
            steps.append(
                PlannedStep("release_connection", item.component, "leave", label, {}, note)
            )
    made = [
        s
        for s in deployment.steps.filter(action="create_folder", state="done")
        if s.undo.get("created")
    ]
    for step in sorted(made, key=lambda s: -len(s.undo.get("args", {}).get("path", []))):
        path = step.undo["args"]["path"]
        steps.append(
            PlannedStep(
                "delete_folder",
                "",
                "delete",
                f"Folder {'/'.join(path)}",
                {"folder": step.undo["made"]},
                "only if nothing is left in it",
            )
        )
    return Preflight("remove", deployment.folder_path, steps, [])


def connections_that_stay(deployment: Deployment) -> list[Connection]:
    """The connections a removal leaves: every one the deployment made or linked."""
    ids = deployment.items.filter(kind="connection", object_id__isnull=False).values("object_id")
    return list(Connection.objects.filter(pk__in=ids).select_related("folder").order_by("name"))
