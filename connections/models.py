"""Connections, their encrypted credentials and their history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from portal.models import Folder
from portal.permissions import Action, folders_where


class ConnectionState(models.TextChoices):
    NOT_CONNECTED = "not_connected", "Not yet connected"
    CONNECTED = "connected", "Connected"
    DEGRADED = "degraded", "Degraded"
    NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
    MISCONFIGURED = "misconfigured", "Misconfigured"


class ConnectionQuerySet(models.QuerySet):
    def in_folder(self, folder: Folder) -> ConnectionQuerySet:
        return self.filter(folder=folder)

    def visible_to(self, user) -> ConnectionQuerySet:
        """The connections the user may see: those in a folder where they
        hold Connections - View (``portal.permissions.folders_where``, the
        rule as a subquery, so any list built on this stays one query). An
        API key's folder scope narrows this further; that is the API's to
        apply."""
        return self.filter(folder__in=folders_where(user, Action.VIEW_CONNECTIONS).values("pk"))

    def in_shared_folders(self) -> ConnectionQuerySet:
        return self.filter(folder__kind=Folder.Kind.SHARED)


class Connection(models.Model):
    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="connections")
    connector_key = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=500, blank=True)
    auth_type = models.CharField(max_length=40)
    # Non-secret values the user filled: instance URL, subdomain, region, e-mail...
    fields = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=20, choices=ConnectionState.choices, default=ConnectionState.NOT_CONNECTED
    )
    is_enabled = models.BooleanField(default=True)
    # The folder's default connection for its connector: what an automation
    # gets when it asks the folder for "the" connection of a connector.
    is_default = models.BooleanField("Default for its connector in this folder", default=False)
    # OAuth 2.0 authorization code with the user's own registered app (BYOA).
    own_app = models.BooleanField("Bring your own OAuth 2.0 app", default=False)
    # When the stored access token expires (OAuth 2.0); None for PAT / keys.
    token_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # How long the stored access token was valid when it was stored: the
    # refresh lead applied to it is at most half of this (connections/refresh.py).
    token_lifetime_seconds = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Moves with every token set stored (refresh, reconnect), in the same
    # UPDATE: the refresh lease's "the row is still as I read it" test, which
    # a timestamp stored to the second cannot be.
    token_version = models.PositiveBigIntegerField(default=0, editable=False)
    # Single-flight refresh: the holder of an unexpired lease is the only one
    # talking to the token endpoint for this connection (connections/refresh.py).
    refresh_lease_owner = models.CharField(max_length=32, blank=True, editable=False)
    refresh_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # When token refreshes began failing transiently (the provider down or
    # slow): they are retried; cleared by the next stored token set.
    refresh_failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the refresh sweep when it enqueues a refresh, so the next sweep
    # does not enqueue it again while it waits in the queue.
    refresh_queued_until = models.DateTimeField(null=True, blank=True, editable=False)
    # A standing warning shown with the connection, e.g. no refresh token.
    warning = models.CharField(max_length=300, blank=True)
    account_identity = models.CharField(max_length=255, blank=True)
    polling_interval_seconds = models.PositiveIntegerField(default=300)
    # Health polling (connections/tasks.py health_sweep): when the next check
    # is due, the last check plus the polling interval; None while disabled or
    # not yet connected, so such connections are never selected.
    next_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the health sweep when it enqueues a check, so the next sweep does
    # not enqueue it again while it waits in the queue.
    check_queued_until = models.DateTimeField(null=True, blank=True, editable=False)
    # When the stored PAT or client secret expires, if the connection's
    # fields or the provider's answer say (e.g. GitHub's token expiration header).
    secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # None means "System": nobody has authenticated it yet.
    authenticated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["folder", "name"], name="connection_unique_name"),
            models.UniqueConstraint(
                fields=["folder", "connector_key"],
                condition=Q(is_default=True),
                name="connection_one_default_per_connector",
            ),
        ]
        indexes = [
            models.Index(fields=["folder", "name"], name="connection_folder_name"),
            models.Index(fields=["folder", "updated_at"], name="connection_folder_updated"),
            models.Index(fields=["folder", "state"], name="connection_folder_state"),
            models.Index(fields=["folder", "connector_key"], name="connection_folder_connector"),
            models.Index(
                fields=["token_expires_at"],
                name="connection_refresh_due",
                condition=Q(is_enabled=True, state__in=["connected", "degraded"]),
            ),
            models.Index(
                fields=["next_check_at"],
                name="connection_check_due",
                condition=Q(is_enabled=True, next_check_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def authenticator_deactivated(self) -> bool:
        """Authenticated by a user who has since been deactivated: the
        connection keeps working, and its folder's administrators should
        reconnect it under an active account."""
        return self.authenticated_by_id is not None and not self.authenticated_by.is_active


class Credential(models.Model):
    """The secret material of one connection, sealed by ``connections.vault``.

    The ciphertext is bound to its connection (the vault's associated data
    names the connection id), so it cannot be copied to another row.
    """

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, primary_key=True, related_name="credential"
    )
    ciphertext = models.TextField(editable=False)
    key_id = models.CharField(max_length=16, db_index=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Credential of connection {self.connection_id}"

    def __repr__(self) -> str:
        return f"<Credential connection={self.connection_id} key={self.key_id}>"


class ConnectionEvent(models.Model):
    """Append-only history of a connection."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        EDITED = "edited", "Edited"
        SECRET_REPLACED = "secret_replaced", "Secret replaced"
        CHECKED = "checked", "Checked"
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        REFRESHED = "refreshed", "Token refreshed"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        RECONNECTED = "reconnected", "Reconnected"
        STATE_CHANGED = "state_changed", "Status changed"
        AUTHENTICATOR_LEFT = "authenticator_left", "Authenticator deactivated"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.CharField(max_length=500, blank=True)
    # When the access token stored with this event (a refresh, a sign-in or
    # a reconnect) expires; None for other events and tokens without expiry.
    token_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.connection_id}"


class HealthCheck(models.Model):
    """One health check of a connection: when, result, latency, error in plain words."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="health_checks"
    )
    checked_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ok = models.BooleanField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-checked_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                name="healthcheck_error_only_when_failed", condition=Q(ok=False) | Q(error="")
            )
        ]

    def __str__(self) -> str:
        return f"{'OK' if self.ok else 'Failed'} {self.connection_id}"


class OAuthApp(models.Model):
    """The portal's own registered OAuth 2.0 app for a connector (set by an
    administrator in the admin). The client secret is sealed by the vault."""

    connector_key = models.CharField(max_length=64, unique=True)
    client_id = models.CharField(max_length=255)
    ciphertext = models.TextField(editable=False)
    key_id = models.CharField(max_length=16, db_index=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "registered OAuth app"

    def __str__(self) -> str:
        return f"OAuth app for {self.connector_key}"


class OAuthFlow(models.Model):
    """One OAuth 2.0 authorization in progress: kept in the database so that
    any web process can finish a flow another began. Single use, expiring,
    bound to the user and their browser session. Its secrets (PKCE verifier,
    a BYOA client secret, tokens awaiting confirmation) are sealed."""

    state = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_binding = models.CharField(max_length=64)
    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    connector_key = models.CharField(max_length=64)
    auth_type = models.CharField(max_length=40)
    own_app = models.BooleanField(default=False)
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=500, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    client_id = models.CharField(max_length=255)
    redirect_uri = models.CharField(max_length=500)
    # The authorization server the flow began with (scheme://host of its
    # authorize URL): an answer naming another issuer is refused.
    issuer = models.CharField(max_length=300)
    ciphertext = models.TextField(editable=False, blank=True)
    key_id = models.CharField(max_length=16, blank=True, editable=False)
    pending_identity = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"OAuth flow {self.pk} for {self.connector_key}"


class SandboxToken(models.Model):
    """A token of the built-in Sandbox API (connections/sandbox.py); only its
    digest is stored, like any secret we only need to verify."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_tokens"
    )
    name = models.CharField(max_length=80)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The last characters, to tell tokens apart.
    hint = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (…{self.hint})"


class SandboxRecord(models.Model):
    """A record of the Sandbox API, for trying triggers offline."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_records"
    )
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.title


# --- Processes, triggers and what they start (connections/triggers/) ----------


class Process(models.Model):
    """A folder's automation that events can start: by a Standard Webhooks
    delivery to ``webhook_url`` (signed with a secret sealed by the vault,
    shown once when made) and/or a job queue robots pull."""

    folder = models.ForeignKey(Folder, on_delete=models.CASCADE, related_name="processes")
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=500, blank=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    # The webhook signing secret ({"secret": "whsec_..."}), sealed and bound to the row.
    ciphertext = models.TextField(editable=False, blank=True)
    key_id = models.CharField(max_length=16, blank=True, db_index=True, editable=False)
    job_queue = models.BooleanField("Robots pull its jobs", default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["folder", "name"], name="process_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ProcessConnection(models.Model):
    """A connection a process requires: one per connector, bound to a
    connection of the process's folder (unbound when that connection goes)."""

    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="requirements")
    connector_key = models.CharField(max_length=64)
    connection = models.ForeignKey(
        Connection,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="required_by",
    )

    class Meta:
        ordering = ["connector_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["process", "connector_key"], name="processconnection_one_per_connector"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.process_id} requires {self.connector_key}"


class Trigger(models.Model):
    """An event of a connection's connector, polled on the connection's
    interval, that starts a process. ``cursor`` is the opaque text of
    ``connections.catalog.events`` (empty: a new trigger, which starts from
    now, or from the beginning with ``include_existing``); it also keeps the
    page where a walk cut short goes on."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="triggers")
    event_key = models.CharField(max_length=64)
    filters = models.JSONField(default=dict, blank=True)
    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="triggers")
    include_existing = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    cursor = models.TextField(blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The last poll: when, whether it worked, how many items it fired, why not.
    last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_poll_ok = models.BooleanField(null=True, editable=False)
    last_poll_items = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    # No poll before this: failures back off, a provider's Retry-After holds
    # every trigger of the connection.
    backoff_until = models.DateTimeField(null=True, blank=True, editable=False)
    # When the poll sweep next polls it; None while disabled.
    next_poll_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the sweep when it enqueues a poll, so the next sweep does not
    # enqueue it again while it waits in the queue.
    poll_queued_until = models.DateTimeField(null=True, blank=True, editable=False)
    # One poll at a time per trigger: a lease taken with a conditional UPDATE.
    poll_lease_owner = models.CharField(max_length=32, blank=True, editable=False)
    poll_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["connection_id", "pk"]
        indexes = [
            models.Index(
                fields=["next_poll_at"],
                name="trigger_poll_due",
                condition=Q(enabled=True, next_poll_at__isnull=False),
            ),
            models.Index(fields=["connection", "event_key"], name="trigger_connection_event"),
        ]

    def __str__(self) -> str:
        return f"{self.event_key} on {self.connection_id}"


class TriggerPoll(models.Model):
    """One poll of a trigger as its history shows it: when, what came of it,
    how many events it fired over how many pages, and why it failed."""

    class Outcome(models.TextChoices):
        OK = "ok", "Succeeded"
        PAUSED = "paused", "Paused"
        FAILED = "failed", "Failed"

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="polls")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    items = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [
            models.Index(fields=["trigger", "-started_at"], name="triggerpoll_trigger_started"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} poll of {self.trigger_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class ProviderHold(models.Model):
    """A provider's rate limit that applies to every connection on a host (a
    connector whose limits are per app, ``rate_limit: app``): no request to
    ``host`` before ``until``."""

    host = models.CharField(max_length=255, unique=True)
    until = models.DateTimeField()
    reason = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.host} until {self.until:%Y-%m-%d %H:%M:%S}"


class TriggerEvent(models.Model):
    """The outbox: one row per provider item per trigger, stored in the same
    transaction as the cursor that moved over it."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="events")
    # The provider's id (for "updated" events, the id @ its timestamp).
    provider_id = models.CharField(max_length=400)
    provider_timestamp = models.DateTimeField(null=True, blank=True)
    summary = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "provider_id"], name="triggerevent_unique_provider_id"
            ),
        ]
        indexes = [
            models.Index(fields=["trigger", "-created_at"], name="triggerevent_trigger_created"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} ({self.trigger_id})"


class Job(models.Model):
    """One run of a process for one event. Delivered by webhook (``webhook_id``
    stays the same across every attempt) and/or pulled by a robot from the
    job queue (claimed with a lease, then completed or failed). Without a job
    queue the job's state follows its delivery."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Claimed"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class DeliveryState(models.TextChoices):
        NONE = "none", "No webhook"
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    process = models.ForeignKey(Process, on_delete=models.CASCADE, related_name="jobs")
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="jobs")
    event = models.ForeignKey(TriggerEvent, on_delete=models.CASCADE, related_name="jobs")
    # A replay (someone asked the event to start the process again): the
    # event's first job. The event's first job has none; a redelivered poll
    # never makes a second one (job_one_per_event).
    replay_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="replays",
        editable=False,
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The webhook: the Standard Webhooks message id, the same for every attempt.
    webhook_id = models.CharField(max_length=64, blank=True)
    delivery_state = models.CharField(
        max_length=12, choices=DeliveryState.choices, default=DeliveryState.NONE
    )
    delivery_attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due (while one is sending: until its lease
    # ends); None once delivered or failed. The delivery sweep's index.
    delivery_due_at = models.DateTimeField(null=True, blank=True)
    # Set by the delivery sweep when it enqueues the delivery, so the next
    # sweep does not enqueue it again while it waits in the queue.
    delivery_queued_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One job per event from the polls; replays come on top.
            models.UniqueConstraint(
                fields=["event"], condition=Q(replay_of__isnull=True), name="job_one_per_event"
            ),
        ]
        indexes = [
            models.Index(fields=["process", "state", "created_at"], name="job_process_state"),
            models.Index(fields=["trigger", "-created_at"], name="job_trigger_created"),
            models.Index(
                fields=["delivery_due_at"],
                name="job_delivery_due",
                condition=Q(delivery_due_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} of process {self.process_id}"


class Delivery(models.Model):
    """One attempt to deliver a job's webhook."""

    class State(models.TextChoices):
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveIntegerField()
    webhook_id = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.SENDING)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # After a failed attempt: when the next one is due (None: no more).
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "attempt"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt"], name="delivery_unique_attempt"),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.attempt} of job {self.job_id}"
