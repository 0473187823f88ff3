"""Solutions: packages of connections, their event triggers and the processes
those start, authored from a source folder, published as immutable numbered
versions, and deployed into folders as recorded, undoable steps. Never a
credential: a package carries definitions only (``solutions/package.py``).

- ``Solution``: a name, its source folder, its draft ``Component`` rows (what
  was picked there, with the properties edited for the package and which of
  them are locked at deployment).
- ``SolutionVersion``: a published version, its manifest (the package
  document) frozen; never changed or deleted while a deployment uses it.
- ``Deployment``: a version deployed into a folder with the deployer's
  choices (per component: authentication type, the connection
  linked, names: its ``configuration``); ``DeploymentStep``: what it did, in order, each step
  idempotent and undoable, so a deployment ends whole or leaves nothing;
  ``DeployedItem``: which object of the portal each component is now (for
  upgrades, removal and the Components panel). Connections made through a
  solution are never deleted by an upgrade or a removal.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from portal.models import Folder


class Solution(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.CharField(max_length=500, blank=True)
    source_folder = models.ForeignKey(
        Folder, null=True, on_delete=models.SET_NULL, related_name="solutions"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Component(models.Model):
    """A part of a solution's draft: a connection, an event trigger or a
    process of the source folder (or below it). ``key`` names it in the
    package (stable across versions: "connection-12" for the connection 12).
    ``properties``: the values edited for the package (a connection's
    ``name``, ``description``, ``auth_type``; a trigger's ``filters``,
    ``enabled``, ``include_existing``; a process's ``name``, ``description``,
    ``webhook_url``, ``job_queue``); ``locked``: those a deployer may not
    change."""

    class Kind(models.TextChoices):
        CONNECTION = "connection", "Connection"
        TRIGGER = "trigger", "Event trigger"
        PROCESS = "process", "Process"

    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="components")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    key = models.CharField(max_length=64)
    connection = models.ForeignKey(
        "connections.Connection", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.ForeignKey(
        "connections.Trigger", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    process = models.ForeignKey(
        "connections.Process", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    properties = models.JSONField(default=dict, blank=True)
    locked = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["solution_id", "kind", "key"]
        constraints = [
            models.UniqueConstraint(fields=["solution", "key"], name="component_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} of {self.solution_id}"


class SolutionVersion(models.Model):
    """A published version: ``number`` counts from 1 per solution; ``manifest``
    is the package document (``solutions.package.Package``), frozen."""

    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    manifest = models.JSONField()
    notes = models.CharField(max_length=500, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(auto_now_add=True)
    # Uploaded from a package file (another portal's version), not published here.
    uploaded = models.BooleanField(default=False)

    class Meta:
        ordering = ["solution_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["solution", "number"], name="version_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.solution_id} v{self.number}"


class Deployment(models.Model):
    """A version deployed into ``folder`` (created if its path did not exist).
    ``configuration``: the deployer's choices per component key (see
    ``solutions/package.py``, ``DeploymentSettings``). Runs as a worker task:
    ``state`` moves planned → running → succeeded, or → rolling back →
    failed (nothing left behind); a worker that dies mid-way leaves its
    lease to run out, and the next run resumes or rolls back."""

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        RUNNING = "running", "Deploying"
        SUCCEEDED = "succeeded", "Deployed"
        ROLLING_BACK = "rolling_back", "Rolling back"
        FAILED = "failed", "Failed (rolled back)"
        REMOVING = "removing", "Removing"
        REMOVED = "removed", "Removed"

    solution = models.ForeignKey(Solution, on_delete=models.PROTECT, related_name="deployments")
    version = models.ForeignKey(
        SolutionVersion, on_delete=models.PROTECT, related_name="deployments"
    )
    # The version this one upgraded (the deployment's earlier version), if any.
    upgraded_from = models.ForeignKey(
        SolutionVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    folder = models.ForeignKey(
        Folder, null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments"
    )
    folder_path = models.CharField(max_length=1000)  # as asked: "Shared/Finance/Invoices"
    configuration = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=14, choices=State.choices, default=State.PLANNED)
    error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker running it: a lease taken with a conditional UPDATE.
    lease_owner = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["state", "lease_until"],
                name="deployment_unfinished",
                condition=Q(state__in=["planned", "running", "rolling_back", "removing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.solution_id} v{self.version_id} into {self.folder_path}"


class DeploymentStep(models.Model):
    """One recorded step of a deployment (or of its upgrade or removal), in
    order. ``action``: what it does ("create_folder", "create_connection",
    "link_connection", "require_connection", "create_process",
    "create_trigger", "update_trigger", "delete_trigger", ...); ``component``:
    the component key; ``state``: pending, done, undone; ``undo``: what
    undoing it needs (the object made, the values it replaced)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        UNDONE = "undone", "Undone"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    action = models.CharField(max_length=32)
    component = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    undo = models.JSONField(default=dict, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deployment_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "position"], name="deploymentstep_unique_position"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.action} {self.component}"


class DeployedItem(models.Model):
    """What a component of a deployment is in the portal now: the connection,
    trigger or process (``object_id``), whether the deployment ``created`` it
    (a linked connection was not), or, for a connection "Configurable by
    users", no object: an unbound requirement resolved at run time by the
    runtime API's connection selection (folder + connector, or the folder's
    default)."""

    class AuthChoice(models.TextChoices):
        CONFIGURABLE = "configurable", "Configurable by users"
        AUTHENTICATE_AFTER = "authenticate_after", "Authenticate after deployment is done"
        LINK_EXISTING = "link_existing", "Link to existing"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="items")
    component = models.CharField(max_length=64)
    kind = models.CharField(max_length=12, choices=Component.Kind.choices)
    object_id = models.PositiveBigIntegerField(null=True, blank=True)
    created = models.BooleanField(default=False)
    auth_choice = models.CharField(max_length=20, choices=AuthChoice.choices, blank=True)
    connector_key = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["deployment_id", "kind", "component"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "component"], name="deployeditem_unique_component"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.component} → {self.kind} {self.object_id}"
