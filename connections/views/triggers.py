"""A connection's Manage triggers pages: its triggers, adding one (the
connector's event, its filters, the process it starts), changing, pausing
and removing one, Run poll now, and a trigger's history (its last poll, the
events it fired, the job each made and its delivery attempts)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections.access import connection_for
from connections.catalog import connector_of
from connections.catalog.schema import ConnectorSpec, EventSpec
from connections.forms import _form_field, add_errors
from connections.models import Connection, Job, Process, Trigger, TriggerEvent, TriggerPoll
from connections.triggers import configure, replay
from connections.triggers.delivery import retry_delivery
from connections.triggers.polling import paused_because
from connections.triggers.tasks import enqueue_deliveries
from portal.htmx import render_page
from portal.permissions import RERUN_JOBS, Action, require_on_connection

# The events a trigger's history lists per page, newest first.
EVENTS_PER_PAGE = 20
# Its polls, newest first, per page (their own page number: ?polls=).
POLLS_PER_PAGE = 20
POLLS_PAGE_PARAM = "polls"
# What choosing another event swaps in: that event's filters.
PARTIALS = ("trigger-fields",)


class TriggerForm(forms.Form):
    """A trigger's filters and process; with ``choose_event``, its event too
    (a trigger's event is fixed once made)."""

    event_key = forms.ChoiceField(label="Event")
    process = forms.ModelChoiceField(
        label="Process it starts",
        queryset=Process.objects.none(),
        empty_label="Choose a process",
        error_messages={
            "required": "Choose the process the trigger starts.",
            "invalid_choice": "Choose one of the folder's processes.",
        },
    )

    def __init__(
        self,
        *args,
        connection: Connection,
        connector: ConnectorSpec,
        event: EventSpec | None,
        choose_event: bool,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.event = event
        if choose_event:
            refusal = f"Choose one of {connector.name}'s events."
            self.fields["event_key"].error_messages.update(required=refusal, invalid_choice=refusal)
            self.fields["event_key"].choices = [("", "Choose an event")] + [
                (spec.key, spec.name) for spec in connector.events
            ]
        else:
            del self.fields["event_key"]
        self.fields["process"].queryset = Process.objects.filter(folder_id=connection.folder_id)
        for spec in event.filters if event else ():
            self.fields[f"field_{spec.key}"] = _form_field(spec)
        if choose_event and event and event.can_include_existing:
            self.fields["include_existing"] = forms.BooleanField(
                label="Fire for the items that exist now too",
                required=False,
                help_text="Off: the first poll starts from now and fires only what comes after.",
            )

    def filter_fields(self):
        return [self[name] for name in self.fields if name.startswith("field_")]

    def filter_values(self) -> dict[str, str]:
        return {
            name.removeprefix("field_"): value
            for name, value in self.cleaned_data.items()
            if name.startswith("field_")
        }


def trigger_for(user, folder_id: int, connection_id: int, trigger_id: int, action: Action):
    """The connection's trigger and the user's permissions: 404 where the
    connection is invisible or the trigger not its, 403 without ``action``."""
    connection, perms = connection_for(user, folder_id, connection_id, action)
    trigger = (
        Trigger.objects.select_related("process")
        .filter(pk=trigger_id, connection=connection)
        .first()
    )
    if trigger is None:
        raise Http404("No such trigger.")
    trigger.connection = connection
    return connection, trigger, perms


def _context(connection: Connection, perms, **more) -> dict:
    return {
        "folder": connection.folder,
        "perms_here": perms,
        "tab": "connections",
        "connection": connection,
        **more,
    }


def _event_of(connector: ConnectorSpec, trigger: Trigger) -> EventSpec | None:
    """The trigger's event, and its filters as (label, value) on
    ``trigger.filter_lines`` for the pages."""
    event = connector.event(trigger.event_key)
    labels = {spec.key: spec.label for spec in event.filters} if event else {}
    trigger.filter_lines = [
        (labels.get(key, key), value) for key, value in trigger.filters.items() if value
    ]
    return event


@require_GET
@login_required
def trigger_list(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, perms = connection_for(request.user, folder_id, connection_id, Action.VIEW_TRIGGERS)
    connector = connector_of(connection)
    triggers = list(connection.triggers.select_related("process").order_by("pk"))
    for trigger in triggers:
        trigger.event = _event_of(connector, trigger)
    return render(
        request,
        "connections/triggers/list.html",
        _context(
            connection,
            perms,
            connector=connector,
            triggers=triggers,
            paused=paused_because(connection),
        ),
    )


@require_http_methods(["GET", "POST"])
@login_required
def trigger_add(request: HttpRequest, folder_id: int, connection_id: int) -> HttpResponse:
    connection, perms = connection_for(
        request.user, folder_id, connection_id, Action.MANAGE_TRIGGERS
    )
    connector = connector_of(connection)
    data = request.POST if request.method == "POST" else None
    asked = data if data is not None else request.GET
    chosen = asked.get("event_key", "")
    if "event_key" not in asked and len(connector.events) == 1:
        chosen = connector.events[0].key  # the only one: its filters at once
    event = connector.event(chosen)
    form = TriggerForm(
        data,
        initial={"event_key": event.key if event else ""},
        connection=connection,
        connector=connector,
        event=event,
        choose_event=True,
    )
    missing = None
    if data is not None and form.is_valid():
        try:
            trigger = configure.create_trigger(
                connection=connection,
                event_key=form.cleaned_data["event_key"],
                filters=form.filter_values(),
                process=form.cleaned_data["process"],
                include_existing=form.cleaned_data.get("include_existing", False),
                created_by=request.user,
            )
        except configure.MissingScopes as error:
            missing = error
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(
                request,
                f"The trigger is added: its first poll is due now and starts "
                f"{'from the items that exist' if trigger.include_existing else 'from now'}.",
            )
            return redirect("connection_triggers", folder_id, connection.pk)
    return render_page(
        request,
        "connections/triggers/form.html",
        _context(
            connection,
            perms,
            connector=connector,
            form=form,
            event=event,
            missing=missing,
            adding=True,
            has_processes=form.fields["process"].queryset.exists(),
        ),
        partials=PARTIALS,
        status=400 if data is not None else None,
    )


@require_http_methods(["GET", "POST"])
@login_required
def trigger_edit(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int
) -> HttpResponse:
    connection, trigger, perms = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.MANAGE_TRIGGERS
    )
    connector = connector_of(connection)
    event = _event_of(connector, trigger)
    initial = {
        "process": trigger.process_id,
        **{f"field_{key}": value for key, value in trigger.filters.items()},
    }
    data = request.POST if request.method == "POST" else None
    form = TriggerForm(
        data,
        initial=initial,
        connection=connection,
        connector=connector,
        event=event,
        choose_event=False,
    )
    if data is not None and form.is_valid():
        try:
            configure.edit_trigger(
                trigger, filters=form.filter_values(), process=form.cleaned_data["process"]
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, "The trigger is saved.")
            return redirect("connection_triggers", folder_id, connection.pk)
    return render(
        request,
        "connections/triggers/form.html",
        _context(
            connection,
            perms,
            connector=connector,
            form=form,
            event=event,
            trigger=trigger,
            adding=False,
            has_processes=True,
        ),
        status=400 if data is not None else None,
    )


@require_POST
@login_required
def trigger_set_enabled(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int
) -> HttpResponse:
    connection, trigger, _ = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.MANAGE_TRIGGERS
    )
    if request.POST.get("enabled") == "1":
        configure.enable_trigger(trigger)
        messages.success(request, "The trigger is enabled: its next poll is due now.")
    else:
        configure.disable_trigger(trigger)
        messages.success(request, "The trigger is disabled: it is not polled until enabled again.")
    return redirect("connection_triggers", folder_id, connection.pk)


@require_POST
@login_required
def trigger_poll_now(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int
) -> HttpResponse:
    connection, trigger, _ = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.MANAGE_TRIGGERS
    )
    try:
        configure.queue_poll(trigger)
    except configure.PollRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request, "A poll is queued: what it finds appears here when a worker has run it."
        )
    return redirect("trigger_detail", folder_id, connection.pk, trigger.pk)


@require_GET
@login_required
def trigger_detail(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int
) -> HttpResponse:
    connection, trigger, perms = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.VIEW_TRIGGERS
    )
    connector = connector_of(connection)
    events = (
        TriggerEvent.objects.filter(trigger=trigger)
        .prefetch_related(
            # The poll's job first, then its replays.
            Prefetch("jobs", queryset=Job.objects.order_by("pk")),
            "jobs__deliveries",
        )
        .order_by("-created_at", "-pk")
    )
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    for event in page.object_list:
        event.job_list = list(event.jobs.all())
    polls = TriggerPoll.objects.filter(trigger=trigger).order_by("-started_at", "-pk")
    polls_page = Paginator(polls, POLLS_PER_PAGE).get_page(request.GET.get(POLLS_PAGE_PARAM))
    return render(
        request,
        "connections/triggers/detail.html",
        _context(
            connection,
            perms,
            connector=connector,
            trigger=trigger,
            event=_event_of(connector, trigger),
            page=page,
            polls_page=polls_page,
            paused=paused_because(connection),
            may_manage=Action.MANAGE_TRIGGERS in perms,
            may_rerun=RERUN_JOBS in perms,
        ),
    )


@require_http_methods(["GET", "POST"])
@login_required
def trigger_event_replay(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int, event_id: int
) -> HttpResponse:
    """Replay one event (``RERUN_JOBS``, as Retry): a confirmation, then a
    new job of the trigger's process."""
    connection, trigger, perms = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.VIEW_TRIGGERS
    )
    require_on_connection(perms, RERUN_JOBS)
    event = TriggerEvent.objects.filter(pk=event_id, trigger=trigger).first()
    if event is None:
        raise Http404("No such event.")
    event.trigger = trigger
    if request.method == "POST":
        job = replay.replay_event(event, on_new_job=enqueue_deliveries)
        how = []
        if job.webhook_id:
            how.append("delivered to its webhook with a new webhook-id")
        if trigger.process.job_queue:
            how.append("waiting in its job queue")
        messages.success(
            request,
            f"Job {job.pk} replays {event.summary or event.provider_id} for "
            f"{trigger.process.name}: {' and '.join(how)}.",
        )
        return redirect("trigger_detail", folder_id, connection.pk, trigger.pk)
    return render(
        request,
        "connections/triggers/confirm_replay.html",
        _context(
            connection,
            perms,
            trigger=trigger,
            item=event,
            event=_event_of(connector_of(connection), trigger),
            jobs=list(event.jobs.order_by("pk")),
        ),
    )


@require_POST
@login_required
def trigger_job_retry(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int, job_id: int
) -> HttpResponse:
    connection, trigger, perms = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.VIEW_TRIGGERS
    )
    require_on_connection(perms, RERUN_JOBS)
    job = Job.objects.select_related("process").filter(pk=job_id, trigger=trigger).first()
    if job is None:
        raise Http404("No such job.")
    if retry_delivery(job):
        transaction.on_commit(lambda: enqueue_deliveries([job.pk]))
        messages.success(
            request, f"Job {job.pk}'s delivery is due again, with the same webhook-id."
        )
    else:
        messages.error(
            request, f"Job {job.pk}'s delivery has not failed: there is nothing to retry."
        )
    return redirect("trigger_detail", folder_id, connection.pk, trigger.pk)


@require_http_methods(["GET", "POST"])
@login_required
def trigger_delete(
    request: HttpRequest, folder_id: int, connection_id: int, trigger_id: int
) -> HttpResponse:
    connection, trigger, perms = trigger_for(
        request.user, folder_id, connection_id, trigger_id, Action.MANAGE_TRIGGERS
    )
    if request.method == "POST":
        configure.delete_trigger(trigger)
        messages.success(request, "The trigger was deleted, with its events and jobs.")
        return redirect("connection_triggers", folder_id, connection.pk)
    connector = connector_of(connection)
    return render(
        request,
        "connections/triggers/confirm_delete.html",
        _context(
            connection,
            perms,
            trigger=trigger,
            event=_event_of(connector, trigger),
            event_count=trigger.events.count(),
            job_count=trigger.jobs.count(),
        ),
    )
