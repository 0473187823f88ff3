"""Triggers through the API: a connection's triggers with their status (and
why one is paused), adding one, enabling, disabling, deleting, Run poll
now, and the events a trigger fired. The same domain functions as the pages
(``connections.triggers.configure``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import Http404, HttpRequest
from ninja import Query, Router, Status

from connections.api.connections import router as connections_router
from connections.api.folders import PageQuery
from connections.api.schemas import (
    Conflict,
    PollQueued,
    TriggerCreate,
    TriggerEventPage,
    TriggerOut,
    TriggerPage,
    answers,
    page_of,
)
from connections.api.scope import scoped_connection, scoped_in
from connections.catalog import get_catalog
from connections.models import Connection, Job, Process, Trigger, TriggerEvent
from connections.triggers import configure
from connections.triggers.polling import paused_because
from portal.permissions import Action

router = Router()

NO_SUCH_TRIGGER = "No such trigger."
REFUSALS = (403, 404)


def scoped_trigger(request: HttpRequest, trigger_id: int, action: Action) -> Trigger:
    """The trigger and the caller's ``action`` on it: 404 when its connection
    is out of sight or out of the key's scope, 403 without the action."""
    trigger = (
        Trigger.objects.select_related("connection__folder", "process")
        .filter(pk=trigger_id)
        .first()
    )
    if trigger is None:
        raise Http404(NO_SUCH_TRIGGER)
    scoped_in(
        request, trigger.connection.folder, action, missing=NO_SUCH_TRIGGER, of_connection=True
    )
    return trigger


def status_of(trigger: Trigger) -> tuple[str, str | None]:
    """(status, why it is paused): disabled, paused, failing or active."""
    if not trigger.enabled:
        return "disabled", None
    paused = paused_because(trigger.connection)
    if paused:
        return "paused", paused
    return ("failing" if trigger.last_poll_ok is False else "active"), None


def trigger_out(trigger: Trigger) -> dict:
    connector = get_catalog().get(trigger.connection.connector_key)
    event = connector.event(trigger.event_key) if connector else None
    status, paused = status_of(trigger)
    return {
        "id": trigger.pk,
        "connection_id": trigger.connection_id,
        "process_id": trigger.process_id,
        "process_name": trigger.process.name,
        "event": trigger.event_key,
        "event_name": event.name if event else trigger.event_key,
        "filters": trigger.filters,
        "include_existing": trigger.include_existing,
        "enabled": trigger.enabled,
        "status": status,
        "paused_because": paused,
        "last_polled_at": trigger.last_polled_at,
        "last_poll_ok": trigger.last_poll_ok,
        "last_poll_items": trigger.last_poll_items,
        "last_error": trigger.last_error,
        "consecutive_failures": trigger.consecutive_failures,
        "next_poll_at": trigger.next_poll_at,
        "backoff_until": trigger.backoff_until,
        "created_at": trigger.created_at,
        "updated_at": trigger.updated_at,
    }


def _reread(trigger: Trigger) -> dict:
    return trigger_out(Trigger.objects.select_related("connection", "process").get(pk=trigger.pk))


@connections_router.get(
    "/connections/{int:connection_id}/triggers",
    response=answers({200: TriggerPage}, *REFUSALS, 422),
    tags=["Triggers"],
    summary="A connection's triggers, with their status and why one is paused",
)
def list_triggers(request: HttpRequest, connection_id: int, query: Query[PageQuery]) -> dict:
    connection = scoped_connection(request, connection_id, Action.VIEW_TRIGGERS)
    triggers = Trigger.objects.filter(connection=connection).select_related("process")
    items, counts = page_of(triggers.order_by("pk"), query.page, query.page_size)
    for trigger in items:
        trigger.connection = connection
    return {"items": [trigger_out(trigger) for trigger in items], **counts}


def _process(connection: Connection, process_id: int) -> Process:
    """A process of the connection's folder; any other id (missing, or of
    another folder) is refused alike."""
    process = Process.objects.filter(pk=process_id, folder_id=connection.folder_id).first()
    if process is None:
        raise ValidationError(
            {"process_id": [f"{connection.folder.name} has no process {process_id}."]}
        )
    return process


@connections_router.post(
    "/connections/{int:connection_id}/triggers",
    response=answers({201: TriggerOut}, 400, *REFUSALS, 409, 422),
    tags=["Triggers"],
    summary="Add a trigger: one of the connector's events, its filters, the process it starts",
    description="Refused with 409, naming them, when the connection was not granted the "
    "scopes the event needs (reconnect it with them granted); 422 by field for an unknown "
    "event, bad filters or a process of another folder. Its first poll starts from now "
    "unless include_existing.",
)
def create_trigger(request: HttpRequest, connection_id: int, data: TriggerCreate):
    connection = scoped_connection(request, connection_id, Action.MANAGE_TRIGGERS)
    try:
        trigger = configure.create_trigger(
            connection=connection,
            event_key=data.event,
            filters=data.filters,
            process=_process(connection, data.process_id),
            include_existing=data.include_existing,
            enabled=data.enabled,
            created_by=request.user,
        )
    except configure.MissingScopes:
        raise  # 409, naming the scopes (connections/api/site.py)
    except ValidationError as refused:
        if "event_key" not in getattr(refused, "error_dict", {}):
            raise
        # The domain's field is the body's "event".
        errors = refused.message_dict
        errors["event"] = errors.pop("event_key")
        raise ValidationError(errors) from None
    return Status(201, _reread(trigger))


@router.get(
    "/triggers/{int:trigger_id}",
    response=answers({200: TriggerOut}, *REFUSALS),
    summary="One trigger, with its status and last poll",
)
def get_trigger(request: HttpRequest, trigger_id: int) -> dict:
    return trigger_out(scoped_trigger(request, trigger_id, Action.VIEW_TRIGGERS))


@router.post(
    "/triggers/{int:trigger_id}/enable",
    response=answers({200: TriggerOut}, *REFUSALS),
    summary="Enable: polled again from where it stopped, due now",
)
def enable_trigger(request: HttpRequest, trigger_id: int) -> dict:
    trigger = scoped_trigger(request, trigger_id, Action.MANAGE_TRIGGERS)
    configure.enable_trigger(trigger)
    return _reread(trigger)


@router.post(
    "/triggers/{int:trigger_id}/disable",
    response=answers({200: TriggerOut}, *REFUSALS),
    summary="Disable: not polled until enabled (its cursor is kept)",
)
def disable_trigger(request: HttpRequest, trigger_id: int) -> dict:
    trigger = scoped_trigger(request, trigger_id, Action.MANAGE_TRIGGERS)
    configure.disable_trigger(trigger)
    return _reread(trigger)


@router.delete(
    "/triggers/{int:trigger_id}",
    response=answers({204: None}, *REFUSALS),
    summary="Delete a trigger, with its events, jobs and deliveries",
)
def delete_trigger(request: HttpRequest, trigger_id: int):
    configure.delete_trigger(scoped_trigger(request, trigger_id, Action.MANAGE_TRIGGERS))
    return Status(204, None)


@router.post(
    "/triggers/{int:trigger_id}/poll",
    response=answers({202: PollQueued}, *REFUSALS, 409),
    summary="Run poll now",
    description="Queues a poll of the trigger whether due or not; 409 when it is disabled or "
    "its connection cannot be used (the answer says why).",
)
def poll_trigger_now(request: HttpRequest, trigger_id: int):
    trigger = scoped_trigger(request, trigger_id, Action.MANAGE_TRIGGERS)
    try:
        configure.queue_poll(trigger)
    except configure.PollRefused as refused:
        raise Conflict(str(refused)) from None
    return Status(202, {"trigger_id": trigger.pk, "detail": "A poll is queued."})


@router.get(
    "/triggers/{int:trigger_id}/events",
    response=answers({200: TriggerEventPage}, *REFUSALS, 422),
    summary="The events a trigger fired, newest first, with the job each started",
)
def list_trigger_events(request: HttpRequest, trigger_id: int, query: Query[PageQuery]) -> dict:
    trigger = scoped_trigger(request, trigger_id, Action.VIEW_TRIGGERS)
    events = TriggerEvent.objects.filter(trigger=trigger).prefetch_related(
        Prefetch(
            "jobs",
            queryset=Job.objects.only(
                "pk", "event_id", "replay_of_id", "state", "delivery_state"
            ).order_by("pk"),
        )
    )
    items, counts = page_of(events.order_by("-created_at", "-pk"), query.page, query.page_size)
    out = []
    for event in items:
        made = list(event.jobs.all())
        job = next((each for each in made if each.replay_of_id is None), None)
        out.append(
            {
                "id": event.pk,
                "trigger_id": event.trigger_id,
                "provider_id": event.provider_id,
                "provider_timestamp": event.provider_timestamp,
                "summary": event.summary,
                "payload": event.payload,
                "created_at": event.created_at,
                "job": _summary(job) if job else None,
                "replays": [_summary(each) for each in made if each.replay_of_id is not None],
            }
        )
    return {"items": out, **counts}


def _summary(job: Job) -> dict:
    return {"id": job.pk, "state": job.state, "delivery_state": job.delivery_state}
