"""The Processes tab of a folder: its automations that events start, each
with the connections it requires and its recent jobs."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections.catalog import get_catalog
from connections.forms import add_errors
from connections.models import Connection, Job, Process
from connections.triggers import processes
from connections.triggers.delivery import retry_delivery
from connections.triggers.tasks import enqueue_deliveries
from portal.permissions import RERUN_JOBS, Action, folder_for

# How many of a process's latest jobs its page lists.
JOBS_SHOWN = 20


class ProcessForm(forms.Form):
    name = forms.CharField(label="Name", max_length=120)
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    webhook_url = forms.CharField(
        label="Webhook URL",
        required=False,
        max_length=500,
        help_text="Each job is posted here as a Standard Webhooks delivery, signed with a secret "
        "shown once, when the process is created.",
        widget=forms.URLInput(attrs={"placeholder": "https://robots.example.com/hooks/invoices"}),
    )
    job_queue = forms.BooleanField(
        label="Robots pull its jobs",
        required=False,
        help_text="For runners that cannot receive webhooks: they list, claim and complete jobs "
        "through the API.",
    )
    requirements = forms.ModelMultipleChoiceField(
        label="Connections it requires",
        required=False,
        queryset=Connection.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="One connection per connector, of this folder.",
    )

    def __init__(self, *args, folder, process: Process | None = None, **kwargs):
        if process is not None and "initial" not in kwargs:
            kwargs["initial"] = initial_of(process)
        super().__init__(*args, **kwargs)
        if process is not None and process.ciphertext:
            self.fields["webhook_url"].help_text = (
                "Each job is posted here as a Standard Webhooks delivery. Its signing secret "
                "is kept when the address changes."
            )
        field = self.fields["requirements"]
        field.queryset = Connection.objects.filter(folder=folder).order_by("name")
        catalog = get_catalog()

        def label(connection: Connection) -> str:
            connector = catalog.get(connection.connector_key)
            return (
                f"{connection.name} ({connector.name if connector else connection.connector_key})"
            )

        field.label_from_instance = label

    def clean_requirements(self):
        chosen: dict[str, Connection] = {}
        for connection in self.cleaned_data["requirements"]:
            if connection.connector_key in chosen:
                raise ValidationError(
                    f"Choose one connection per connector: {chosen[connection.connector_key].name} "
                    f"and {connection.name} are both {connection.connector_key} connections."
                )
            chosen[connection.connector_key] = connection
        return chosen


def initial_of(process: Process) -> dict:
    """The edit form's values: the process as stored."""
    return {
        "name": process.name,
        "description": process.description,
        "webhook_url": process.webhook_url,
        "job_queue": process.job_queue,
        "requirements": [
            requirement.connection_id
            for requirement in process.requirements.all()
            if requirement.connection_id is not None
        ],
    }


def process_for(user, folder_id: int, process_id: int, action: Action):
    """The folder's process and the user's permissions there: 404 where the
    folder is invisible or the process not in it, 403 without ``action``."""
    folder, perms = folder_for(user, folder_id, action)
    try:
        process = Process.objects.get(pk=process_id, folder=folder)
    except Process.DoesNotExist:
        raise Http404("No such process.") from None
    return folder, process, perms


@require_GET
@login_required
def process_list(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.VIEW_PROCESSES)
    listed = Process.objects.filter(folder=folder).prefetch_related("requirements__connection")
    return render(
        request,
        "connections/processes/list.html",
        {"folder": folder, "perms_here": perms, "tab": "processes", "processes": listed},
    )


@require_http_methods(["GET", "POST"])
@never_cache  # the answer to a creation holds the signing secret: no copy in any cache
@login_required
def process_add(request: HttpRequest, folder_id: int) -> HttpResponse:
    folder, perms = folder_for(request.user, folder_id, Action.MANAGE_PROCESSES)
    form = ProcessForm(request.POST or None, folder=folder)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            made = processes.create_process(
                folder=folder,
                name=data["name"],
                description=data["description"],
                webhook_url=data["webhook_url"],
                job_queue=data["job_queue"],
                requirements=data["requirements"],
                created_by=request.user,
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            # The signing secret is in this answer only: nothing keeps it to show again.
            return render(
                request,
                "connections/processes/created.html",
                {
                    "folder": folder,
                    "perms_here": perms,
                    "tab": "processes",
                    "process": made.process,
                    "signing_secret": made.signing_secret,
                },
            )
    return render(
        request,
        "connections/processes/add.html",
        {"folder": folder, "perms_here": perms, "tab": "processes", "form": form},
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
@never_cache  # a first webhook's signing secret may be in the answer
@login_required
def process_edit(request: HttpRequest, folder_id: int, process_id: int) -> HttpResponse:
    folder, process, perms = process_for(
        request.user, folder_id, process_id, Action.MANAGE_PROCESSES
    )
    form = ProcessForm(request.POST or None, folder=folder, process=process)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        # A connector still to choose (its connection deleted) stays required
        # unless the form binds it: the form lists connections, not connectors.
        unbound = {
            requirement.connector_key: None
            for requirement in process.requirements.filter(connection__isnull=True)
        }
        try:
            saved = processes.edit_process(
                process,
                name=data["name"],
                description=data["description"],
                webhook_url=data["webhook_url"],
                job_queue=data["job_queue"],
                requirements={**unbound, **data["requirements"]},
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            if saved.signing_secret:
                # A first webhook: its secret is in this answer only.
                return render(
                    request,
                    "connections/processes/created.html",
                    {
                        "folder": folder,
                        "perms_here": perms,
                        "tab": "processes",
                        "process": process,
                        "signing_secret": saved.signing_secret,
                        "edited": True,
                    },
                )
            messages.success(request, f"{process.name} is saved.")
            return redirect("process_detail", folder.pk, process.pk)
    return render(
        request,
        "connections/processes/add.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "processes",
            "form": form,
            "process": process,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_GET
@login_required
def process_detail(request: HttpRequest, folder_id: int, process_id: int) -> HttpResponse:
    folder, process, perms = process_for(request.user, folder_id, process_id, Action.VIEW_PROCESSES)
    catalog = get_catalog()
    requirements = [
        (requirement, catalog.get(requirement.connector_key))
        for requirement in process.requirements.select_related("connection")
    ]
    jobs = None
    if Action.VIEW_JOBS in perms:
        jobs = list(
            Job.objects.filter(process=process)
            .select_related("event", "trigger__connection")
            .order_by("-created_at", "-pk")[:JOBS_SHOWN]
        )
    return render(
        request,
        "connections/processes/detail.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "processes",
            "process": process,
            "requirements": requirements,
            "triggers": process.triggers.select_related("connection"),
            "jobs": jobs,
            "may_retry": RERUN_JOBS in perms,
        },
    )


@require_POST
@login_required
def process_job_retry(
    request: HttpRequest, folder_id: int, process_id: int, job_id: int
) -> HttpResponse:
    _, process, _ = process_for(request.user, folder_id, process_id, RERUN_JOBS)
    job = Job.objects.select_related("process").filter(pk=job_id, process=process).first()
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
    return redirect("process_detail", folder_id, process.pk)


@require_http_methods(["GET", "POST"])
@never_cache  # the answer holds the new signing secret: no copy in any cache
@login_required
def process_replace_secret(request: HttpRequest, folder_id: int, process_id: int) -> HttpResponse:
    """Asked first; then a new webhook signing secret, shown once (the way to
    get one for a process that came from a deployment or an import, or whose
    secret was lost). The old one stops working at once."""
    folder, process, perms = process_for(
        request.user, folder_id, process_id, Action.MANAGE_PROCESSES
    )
    context = {"folder": folder, "perms_here": perms, "tab": "processes", "process": process}
    if not process.webhook_url:
        messages.error(request, f"{process.name} has no webhook: there is no secret to replace.")
        return redirect("process_detail", folder.pk, process.pk)
    if request.method == "POST":
        context.update(signing_secret=processes.replace_signing_secret(process), replaced=True)
        return render(request, "connections/processes/created.html", context)
    return render(request, "connections/processes/confirm_replace_secret.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def process_delete(request: HttpRequest, folder_id: int, process_id: int) -> HttpResponse:
    folder, process, perms = process_for(
        request.user, folder_id, process_id, Action.MANAGE_PROCESSES
    )
    if request.method == "POST":
        name = process.name
        processes.delete_process(process)
        messages.success(request, f"{name} was deleted, with its triggers and jobs.")
        return redirect("folder_processes", folder.pk)
    return render(
        request,
        "connections/processes/confirm_delete.html",
        {
            "folder": folder,
            "perms_here": perms,
            "tab": "processes",
            "process": process,
            "triggers": process.triggers.select_related("connection"),
            "job_count": process.jobs.count(),
        },
    )
