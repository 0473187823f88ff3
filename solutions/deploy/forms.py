"""The deployment form: the target folder, and per component of the version
the deployer's choices its author did not lock (a connection's
Authentication type, the connection to link, its name and description; a
process's name, description, webhook URL and job queue; a trigger's filters,
whether it is enabled and whether its first poll includes existing items). It builds the
same deployment settings document the runtime API takes
(``solutions.package.DeploymentSettings``), so both are validated alike.

Modes: ``deploy`` and ``upgrade`` offer every Authentication type, with a
Link to existing picker of the connections the deployer may use; ``edit``
(Edit deployment configuration) offers neither: those need an upgrade."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms

from connections.catalog import get_catalog
from connections.transfer.format import DocumentRefused
from solutions.deploy.preflight import Preflight, linkable_connections
from solutions.models import DeployedItem, Deployment
from solutions.package import Package, parse_settings

AUTH_CHOICES = DeployedItem.AuthChoice.choices
SEP = "__"
FILTER = "filter_"  # a trigger's filter field: "<key>__filter_<filter key>"
SECTIONS = {"connection": "connections", "process": "processes", "trigger": "triggers"}


@dataclass
class ComponentFields:
    """A component as the form shows it: its title and its field names."""

    kind: str
    key: str
    title: str
    fields: list[str]
    locked: list[str]
    note: str = ""


class DeploymentForm(forms.Form):
    def __init__(
        self,
        data=None,
        *,
        package: Package,
        user,
        mode: str = "deploy",
        deployment: Deployment | None = None,
    ):
        super().__init__(data)
        self.package, self.user, self.mode, self.deployment = package, user, mode, deployment
        self.components: list[ComponentFields] = []
        items = {i.component: i for i in deployment.items.all()} if deployment else {}
        configured = (deployment.configuration if deployment else {}) or {}
        if mode == "deploy":
            self.fields["folder"] = forms.CharField(
                label="Target folder",
                max_length=1000,
                help_text="A folder path, e.g. Finance/Invoices. A folder that does not exist "
                "is created.",
                widget=forms.TextInput(attrs={"placeholder": "Finance/Invoices"}),
            )
        for component in package.connections:
            self._connection(component, items.get(component.key), configured)
        for component in package.processes:
            self._process(component, configured)
        for component in package.triggers:
            self._trigger(component, configured)

    def name(self, key: str, attr: str) -> str:
        return f"{key}{SEP}{attr}"

    def _chosen(self, configured: dict, section: str, key: str, attr: str):
        return ((configured.get(section) or {}).get(key) or {}).get(attr)

    def _property(
        self,
        section: str,
        component,
        configured: dict,
        names: list[str],
        attr: str,
        field: Callable[[object], forms.Field],
    ) -> None:
        """The field for a component's ``attr`` unless the package locks it:
        ``field(initial)``, initial the deployer's earlier choice, else the
        package's value."""
        if attr in component.locked:
            return
        current = self._chosen(configured, section, component.key, attr)
        name = self.name(component.key, attr)
        self.fields[name] = field(getattr(component, attr) if current is None else current)
        names.append(name)

    def _name_and_description(
        self, section: str, component, configured: dict, names: list[str], what: str
    ) -> None:
        self._property(
            section,
            component,
            configured,
            names,
            "name",
            lambda initial: forms.CharField(label=f"{what} name", max_length=120, initial=initial),
        )
        self._property(
            section,
            component,
            configured,
            names,
            "description",
            lambda initial: forms.CharField(
                label=f"{what} description",
                max_length=500,
                required=False,
                initial=initial,
                widget=forms.Textarea(attrs={"rows": 2}),
            ),
        )

    def _connection(self, component, item: DeployedItem | None, configured: dict) -> None:
        key, names = component.key, []
        locked = list(component.locked)
        note = ""
        if self.mode != "edit" and "auth_type" not in locked:
            auth = self.name(key, "auth")
            self.fields[auth] = forms.ChoiceField(
                label="Authentication type",
                choices=AUTH_CHOICES,
                widget=forms.RadioSelect,
                initial=item.auth_choice if item else "authenticate_after",
            )
            linkable = (
                linkable_connections(self.user)
                .filter(connector_key=component.connector)
                .select_related("folder")
                .order_by("folder__path", "name")
            )
            link = self.name(key, "link")
            self.fields[link] = forms.TypedChoiceField(
                label="Link to existing",
                coerce=int,
                required=False,
                empty_value=None,
                choices=[("", "Choose a connection")]
                + [(c.pk, f"{c.name} (in {c.folder.name})") for c in linkable],
                initial=item.object_id if item and item.auth_choice == "link_existing" else None,
                help_text="The connections you may use: they stay where they are.",
            )
            names += [auth, link]
        elif item is not None:
            note = f"Authentication type: {item.get_auth_choice_display()}"
            if self.mode == "edit":
                note += " (changed only by an upgrade)"
        else:
            note = "Authentication type: Authenticate after deployment is done (locked)"
        self._name_and_description("connections", component, configured, names, "Connection")
        title = f"{component.name} ({component.connector})"
        self.components.append(ComponentFields("connection", key, title, names, locked, note))

    def _process(self, component, configured: dict) -> None:
        key, names = component.key, []
        self._name_and_description("processes", component, configured, names, "Process")
        self._property(
            "processes",
            component,
            configured,
            names,
            "webhook_url",
            lambda initial: forms.CharField(
                label="Webhook URL",
                max_length=500,
                required=False,
                initial=initial,
                help_text="Where its jobs are delivered (Standard Webhooks). It gets a new "
                "signing secret: Replace signing secret on the process's page shows one once.",
            ),
        )
        self._property(
            "processes",
            component,
            configured,
            names,
            "job_queue",
            lambda initial: forms.BooleanField(
                label="Robots pull its jobs", required=False, initial=initial
            ),
        )
        self.components.append(
            ComponentFields("process", key, component.name, names, list(component.locked))
        )

    def _trigger(self, component, configured: dict) -> None:
        key, names = component.key, []
        self._property(
            "triggers",
            component,
            configured,
            names,
            "enabled",
            lambda initial: forms.BooleanField(
                label="Enabled",
                required=False,
                initial=initial,
                help_text="A trigger on a connection not yet authenticated stays paused until "
                "someone authenticates it.",
            ),
        )
        self._property(
            "triggers",
            component,
            configured,
            names,
            "include_existing",
            lambda initial: forms.BooleanField(
                label="Include existing items at the first poll", required=False, initial=initial
            ),
        )
        if "filters" not in component.locked:
            chosen = self._chosen(configured, "triggers", key, "filters")
            values = component.filters if chosen is None else chosen
            for spec in self._filter_specs(component):
                name = self.name(key, f"{FILTER}{spec.key}")
                self.fields[name] = forms.CharField(
                    label=spec.label,
                    required=spec.required,
                    max_length=spec.max_length,
                    help_text=spec.help,
                    initial=values.get(spec.key, ""),
                )
                names.append(name)
        connections = {c.key: c.name for c in self.package.connections}
        title = f"{component.event} on {connections.get(component.connection, '')}"
        self.components.append(
            ComponentFields("trigger", key, title, names, list(component.locked))
        )

    def _filter_specs(self, component) -> tuple:
        """The filter fields of a trigger's event (none when this portal's
        catalog lacks the connector or the event: the preflight says so)."""
        connectors = {c.key: c.connector for c in self.package.connections}
        connector = get_catalog().get(connectors.get(component.connection, ""))
        event = connector.event(component.event) if connector else None
        return event.filters if event else ()

    def groups(self) -> list[tuple[str, list]]:
        """(heading, [(component, [bound fields])]) for the template."""
        headings = {
            "connection": "Connections",
            "process": "Processes",
            "trigger": "Event triggers",
        }
        grouped = []
        for kind, heading in headings.items():
            rows = [
                (c, [self[name] for name in c.fields]) for c in self.components if c.kind == kind
            ]
            if rows:
                grouped.append((heading, rows))
        return grouped

    def clean(self):
        cleaned = super().clean()
        for component in self.components:
            if component.kind != "connection":
                continue
            auth = cleaned.get(self.name(component.key, "auth"))
            link_name = self.name(component.key, "link")
            if auth == "link_existing" and not cleaned.get(link_name):
                self.add_error(link_name, "Choose the connection to link.")
        return cleaned

    def document(self) -> dict:
        """The deployment settings document of the cleaned choices."""
        data = self.cleaned_data
        doc: dict = {"connections": {}, "processes": {}, "triggers": {}}
        if self.mode == "deploy":
            doc["folder"] = data["folder"]
        for component in self.components:
            section = doc[SECTIONS[component.kind]]
            choice = {}
            for name in component.fields:
                attr = name.split(SEP, 1)[1]
                value = data.get(name)
                if attr == "link" and data.get(self.name(component.key, "auth")) != "link_existing":
                    continue
                if attr == "description" and value is None:
                    value = ""
                if attr.startswith(FILTER):
                    if value:
                        choice.setdefault("filters", {})[attr[len(FILTER) :]] = value
                    else:
                        choice.setdefault("filters", {})
                    continue
                choice[attr] = value
            if choice:
                section[component.key] = choice
        return {k: v for k, v in doc.items() if v}

    def settings(self, folder: str | None = None):
        """The settings document parsed (``DocumentRefused`` problems filed
        on the fields they name), or None."""
        doc = self.document()
        if folder is not None:
            doc["folder"] = folder
        try:
            return parse_settings(doc)
        except DocumentRefused as error:
            self.refuse(error.problems)
            return None

    def refuse(self, problems) -> None:
        """File each problem ("connections.connection-1.name: ...", or a
        preflight ``Problem``) on its field, the rest on the form."""
        for problem in problems:
            where, message = (
                (problem.where, problem.message)
                if hasattr(problem, "where")
                else tuple(str(problem).partition(": ")[::2])
            )
            field = self._field_of(where)
            if field is not None and field in self.fields:
                if message not in self.errors.get(field, []):
                    self.add_error(field, message)
            elif message not in self.non_field_errors():
                self.add_error(None, message if not where else f"{where}: {message}")

    def _field_of(self, where: str) -> str | None:
        if where == "folder":
            return "folder"
        parts = where.split(".")
        if len(parts) >= 4 and parts[0] == "triggers" and parts[2] == "filters":
            return self.name(parts[1], f"{FILTER}{parts[3]}")
        if len(parts) >= 3 and parts[0] in {"connections", "processes", "triggers"}:
            return self.name(parts[1], parts[2])
        return None

    def refuse_preflight(self, check: Preflight) -> None:
        self.refuse(check.blocking)


class UpgradeVersionForm(forms.Form):
    version = forms.TypedChoiceField(label="Version to deploy", coerce=int)

    def __init__(self, data=None, *, numbers: list[int]):
        super().__init__(data)
        self.fields["version"].choices = [(n, f"Version {n}") for n in numbers]
        if numbers:
            self.fields["version"].initial = numbers[0]
