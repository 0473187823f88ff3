"""Build and publish: a solution's draft components, as they are now, made
into an immutable numbered version whose manifest is a package
(``solutions.package``); a version downloaded as a package file; a package
file uploaded into this portal as a new version.

The manifest is built from plain columns and the components' properties
only: no credential, token, client secret or webhook signing secret is
read, so none can reach a package. Folders are relative to the source
folder ([] is the source folder itself)."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from connections.models import Connection, Process, Trigger
from connections.transfer.export import declared_fields
from connections.transfer.format import DocumentRefused
from portal import audit
from portal.models import AuditRecord, Folder
from solutions.authoring import Kind, clean_solution_name
from solutions.models import Component, Solution, SolutionVersion
from solutions.package import (
    FORMAT_VERSION,
    ConnectionComponent,
    Package,
    ProcessComponent,
    Requirement,
    SolutionInfo,
    TriggerComponent,
    parse,
    validate,
)

NOTES_MAX = 500


class PublishRefused(Exception):
    """The draft cannot be published as it is: ``problems`` say why, naming
    each component. Nothing was published."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _relative(folder: Folder, source: Folder, names: dict[int, str]) -> list[str]:
    ids = folder.ancestor_ids
    base = len(source.ancestor_ids)
    return [names[pk] for pk in ids[base:]]


def _label(component: Component) -> str:
    name = component.properties.get("name")
    return f"{component.key} ({name})" if name else component.key


def build_package(solution: Solution, *, number: int) -> Package:
    """The package of ``solution``'s components as they are now, numbered
    ``number``; PublishRefused naming each component that cannot be
    packaged (its object deleted, moved out of the source folder, or a
    trigger whose connection or process is not in the solution)."""
    source = solution.source_folder
    if source is None:
        raise PublishRefused(["The solution's source folder was deleted."])
    components = list(
        solution.components.select_related(
            "connection__folder", "trigger__connection", "process__folder"
        ).prefetch_related("process__requirements")
    )
    problems = []
    if not components:
        problems.append("The solution has no components: add some first.")
    inside = {f.pk: f for f in Folder.objects.filter(path__startswith=source.path)}
    names = {pk: f.name for pk, f in inside.items()}
    keys = {c.key for c in components}
    connections, triggers, processes = [], [], []
    for component in components:
        obj = getattr(component, component.kind)
        if obj is None:
            problems.append(f"{_label(component)} was deleted: remove it from the solution.")
            continue
        folder_id = obj.connection.folder_id if component.kind == Kind.TRIGGER else obj.folder_id
        if folder_id not in inside:
            problems.append(
                f"{_label(component)} is no longer in the source folder or a folder below it."
            )
            continue
        props = component.properties
        if component.kind == Kind.CONNECTION:
            connections.append(
                _connection(component, obj, props, _relative(inside[folder_id], source, names))
            )
        elif component.kind == Kind.PROCESS:
            processes.append(
                _process(component, obj, props, _relative(inside[folder_id], source, names), keys)
            )
        else:
            for other, kind in ((obj.connection_id, "connection"), (obj.process_id, "process")):
                if f"{kind}-{other}" not in keys:
                    problems.append(
                        f"{component.key}: its {kind} is not in the solution: add it or remove "
                        "the trigger."
                    )
            triggers.append(_trigger(component, obj, props))
    if problems:
        raise PublishRefused(problems)
    try:
        return validate(
            Package(
                format=FORMAT_VERSION,
                solution=SolutionInfo(name=solution.name, description=solution.description),
                version=number,
                published_at=timezone.now().replace(microsecond=0),
                connections=connections,
                triggers=triggers,
                processes=processes,
            ).model_dump(mode="json")
        )
    except (DocumentRefused, ValueError) as error:
        raise PublishRefused(getattr(error, "problems", [str(error)])) from None


def _connection(component: Component, obj: Connection, props: dict, folder: list[str]):
    return ConnectionComponent(
        key=component.key,
        folder=folder,
        connector=obj.connector_key,
        name=props.get("name") or obj.name,
        description=props.get("description", obj.description),
        auth_type=props.get("auth_type") or obj.auth_type,
        own_app=obj.own_app,
        polling_interval_seconds=obj.polling_interval_seconds,
        fields=declared_fields(obj),
        locked=component.locked,
    )


def _trigger(component: Component, obj: Trigger, props: dict):
    return TriggerComponent(
        key=component.key,
        connection=f"connection-{obj.connection_id}",
        process=f"process-{obj.process_id}",
        event=obj.event_key,
        filters={k: str(v) for k, v in props.get("filters", obj.filters).items()},
        include_existing=props.get("include_existing", obj.include_existing),
        enabled=props.get("enabled", obj.enabled),
        locked=component.locked,
    )


def _process(component: Component, obj: Process, props: dict, folder: list[str], keys: set):
    requires = []
    for requirement in obj.requirements.all():
        bound = f"connection-{requirement.connection_id}" if requirement.connection_id else None
        requires.append(
            Requirement(
                connector=requirement.connector_key, connection=bound if bound in keys else None
            )
        )
    return ProcessComponent(
        key=component.key,
        folder=folder,
        name=props.get("name") or obj.name,
        description=props.get("description", obj.description),
        webhook_url=props.get("webhook_url", obj.webhook_url),
        job_queue=props.get("job_queue", obj.job_queue),
        requires=requires,
        locked=component.locked,
    )


def _clean_notes(notes: str) -> str:
    notes = (notes or "").strip()
    if len(notes) > NOTES_MAX:
        raise ValidationError(
            {"notes": f"The notes are too long ({NOTES_MAX} characters at most)."}
        )
    return notes


def _next_number(solution: Solution) -> int:
    """The next version number; the caller holds the solution's row lock."""
    return (solution.versions.aggregate(top=Max("number"))["top"] or 0) + 1


def publish(solution: Solution, *, notes: str = "", actor=None) -> SolutionVersion:
    """Build and publish: the next numbered version, its manifest frozen.
    PublishRefused naming each component that cannot be packaged;
    ValidationError for notes too long. Nothing is published then."""
    notes = _clean_notes(notes)
    with transaction.atomic():
        # One number at a time per solution: the row lock orders publishers.
        Solution.objects.select_for_update().get(pk=solution.pk)
        number = _next_number(solution)
        package = build_package(solution, number=number)
        version = SolutionVersion.objects.create(
            solution=solution,
            number=number,
            manifest=package.model_dump(mode="json"),
            notes=notes,
            published_by=actor,
        )
        audit.record(
            AuditRecord.Action.SOLUTION_PUBLISHED,
            actor=actor,
            folder_id=solution.source_folder_id,
            target=("solution", solution.pk, solution.name),
            detail=f"Published version {number}: {summary(package)}.",
        )
    return version


def summary(package: Package) -> str:
    def count(items: list, word: str, plural: str) -> str:
        return f"{len(items)} {word if len(items) == 1 else plural}"

    return ", ".join(
        (
            count(package.connections, "connection", "connections"),
            count(package.triggers, "event trigger", "event triggers"),
            count(package.processes, "process", "processes"),
        )
    )


# --- Package files ------------------------------------------------------------


def package_text(version: SolutionVersion) -> str:
    """The version's package file (JSON, the format of ``package-schema.json``)."""
    return validate(version.manifest).model_dump_json(indent=2) + "\n"


def package_filename(version: SolutionVersion) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in version.solution.name.lower())
    slug = "-".join(part for part in slug.split("-") if part) or "solution"
    return f"{slug}-v{version.number}.json"


def download_package(version: SolutionVersion, *, actor=None) -> str:
    """The package file, its download audited."""
    text = package_text(version)
    audit.record(
        AuditRecord.Action.SOLUTION_DOWNLOADED,
        actor=actor,
        folder_id=version.solution.source_folder_id,
        target=("solution", version.solution_id, version.solution.name),
        detail=f"Downloaded version {version.number}.",
    )
    return text


@dataclass
class Uploaded:
    version: SolutionVersion
    created: bool  # a new solution was made for it


def solution_for_upload(package: Package) -> Solution | None:
    """The solution an uploaded package becomes a version of (by name), if any."""
    return Solution.objects.filter(name__iexact=package.solution.name).first()


def upload_package(
    raw: bytes | str, *, folder: Folder | None = None, actor=None, filename: str = ""
) -> Uploaded:
    """Bring a package file in as a new version (flagged uploaded) of the
    solution of its name, made in ``folder`` when there is none.
    DocumentRefused naming each problem when the file is malformed or of a
    newer format: nothing is written then. The caller asks permission first
    (``solution_for_upload`` says which solution the file names)."""
    package = parse(raw)
    with transaction.atomic():
        solution = solution_for_upload(package)
        created = solution is None
        if created:
            if folder is None:
                raise DocumentRefused(
                    ["solution.name: no solution of that name here: choose its folder"]
                )
            try:
                name = clean_solution_name(package.solution.name)
            except ValidationError as error:
                raise DocumentRefused(
                    [f"solution.name: {m}" for m in error.message_dict.get("name", [])]
                ) from None
            solution = Solution.objects.create(
                name=name,
                description=package.solution.description,
                source_folder=folder,
                created_by=actor,
            )
        Solution.objects.select_for_update().get(pk=solution.pk)
        number = _next_number(solution)
        manifest = package.model_copy(update={"version": number}).model_dump(mode="json")
        where = f" from {filename}" if filename else ""
        try:
            version = SolutionVersion.objects.create(
                solution=solution,
                number=number,
                manifest=manifest,
                notes=f"Uploaded{where} (version {package.version} where it was published)."[
                    :NOTES_MAX
                ],
                published_by=actor,
                uploaded=True,
            )
        except IntegrityError:  # pragma: no cover - the row lock orders uploads
            raise DocumentRefused(
                ["version: another version was published at once; try again"]
            ) from None
        audit.record(
            AuditRecord.Action.SOLUTION_UPLOADED,
            actor=actor,
            folder_id=solution.source_folder_id,
            target=("solution", solution.pk, solution.name),
            detail=f"Uploaded as version {number}: {summary(package)}.",
        )
    return Uploaded(version, created)
