"""Jobs through the API: the job queue robots pull (a process's pending jobs,
claim one with a lease, extend the lease while working, complete or fail it
with the lease token), Retry of a failed webhook delivery and Replay of a
job's event. The same domain functions as the pages
(``connections.triggers.jobs``, ``connections.triggers.delivery``,
``connections.triggers.replay``).

Seeing jobs needs Jobs - View; claiming, extending and finishing one is
running the process, which needs Connections - Use as well (the Automation
User's role; a Viewer sees the queue and changes nothing). Robots running
jobs do their work, not manage connections: claiming, extending and
finishing jobs stays allowed in read-only mode (``WHILE_READ_ONLY``); Retry
and Replay do not."""

from __future__ import annotations

from django.db import transaction
from django.http import Http404, HttpRequest
from ninja import Query, Router, Status

from connections.api.folders import PageQuery
from connections.api.processes import scoped_process
from connections.api.read_only import WHILE_READ_ONLY
from connections.api.schemas import (
    ClaimedJob,
    Conflict,
    JobClaim,
    JobComplete,
    JobExtend,
    JobFail,
    JobOut,
    JobPage,
    answers,
    page_of,
)
from connections.api.scope import scoped_in
from connections.models import Job, Trigger
from connections.triggers import jobs, replay
from connections.triggers.delivery import retry_delivery
from connections.triggers.tasks import enqueue_deliveries
from portal.permissions import RERUN_JOBS, Action, require_on_connection

router = Router()

NO_SUCH_JOB = "No such job."
REFUSALS = (403, 404)


def _runner(perms: frozenset) -> None:
    """Claiming or finishing a job runs the process: Connections - Use too."""
    require_on_connection(perms, Action.USE_CONNECTIONS)


def scoped_job(request: HttpRequest, job_id: int, action: Action) -> tuple[Job, frozenset]:
    """The job and the caller's permissions in its process's folder: 404 out
    of sight or out of the key's scope, 403 without ``action``."""
    job = (
        Job.objects.select_related("process__folder", "trigger", "event").filter(pk=job_id).first()
    )
    if job is None:
        raise Http404(NO_SUCH_JOB)
    return job, scoped_in(request, job.process.folder, action, missing=NO_SUCH_JOB)


def job_out(job: Job) -> dict:
    """The job as the API shows it; never its lease token."""
    event = job.event
    return {
        "id": job.pk,
        "process_id": job.process_id,
        "trigger_id": job.trigger_id,
        "connection_id": job.trigger.connection_id,
        "state": job.state,
        "result": job.result,
        "created_at": job.created_at,
        "claimed_at": job.claimed_at,
        "lease_until": job.lease_until,
        "finished_at": job.finished_at,
        "delivery_state": job.delivery_state,
        "delivery_attempts": job.delivery_attempts,
        "replay_of": job.replay_of_id,
        "event": {
            "id": event.pk,
            "provider_id": event.provider_id,
            "provider_timestamp": event.provider_timestamp,
            "summary": event.summary,
            "payload": event.payload,
        },
    }


@router.get(
    "/processes/{int:process_id}/jobs",
    response=answers({200: JobPage}, *REFUSALS, 409, 422),
    summary="A process's jobs a robot may claim now, oldest first",
    description="Waiting jobs, and claimed ones whose lease has ended. 409 when the process "
    "has no job queue (its jobs go by webhook).",
)
def list_pending_jobs(request: HttpRequest, process_id: int, query: Query[PageQuery]) -> dict:
    process, _ = scoped_process(request, process_id, Action.VIEW_JOBS)
    jobs.require_queue(process)
    items, counts = page_of(jobs.pending_jobs(process), query.page, query.page_size)
    return {"items": [job_out(job) for job in items], **counts}


@router.post(
    "/processes/{int:process_id}/jobs/claim",
    response=answers({200: ClaimedJob, 204: None}, 400, *REFUSALS, 409, 422),
    summary="Claim the oldest pending job with a lease",
    description="Answers the job and its lease token (204 when no job waits). Two robots "
    "never hold one job. Once the lease ends another robot may claim it. Needs Jobs - View "
    "and Connections - Use.",
    openapi_extra=WHILE_READ_ONLY,
)
def claim_job(request: HttpRequest, process_id: int, data: JobClaim | None = None):
    process, perms = scoped_process(request, process_id, Action.VIEW_JOBS)
    _runner(perms)
    claimed = jobs.claim_job(process, lease_seconds=(data or JobClaim()).lease_seconds)
    if claimed is None:
        return Status(204, None)
    return {**job_out(claimed.job), "lease_token": claimed.lease_token}


def _held_job(request: HttpRequest, job_id: int) -> Job:
    job, perms = scoped_job(request, job_id, Action.VIEW_JOBS)
    _runner(perms)
    return job


@router.post(
    "/jobs/{int:job_id}/complete",
    response=answers({200: JobOut}, 400, *REFUSALS, 409, 422),
    summary="Complete a claimed job (with its lease token)",
    description="409 when the token does not hold the job: its lease ended and another robot "
    "claimed it, or it is finished.",
    openapi_extra=WHILE_READ_ONLY,
)
def complete_job(request: HttpRequest, job_id: int, data: JobComplete) -> dict:
    job = _held_job(request, job_id)
    return job_out(jobs.complete_job(job, lease_token=data.lease_token, result=data.result))


@router.post(
    "/jobs/{int:job_id}/fail",
    response=answers({200: JobOut}, 400, *REFUSALS, 409, 422),
    summary="Fail a claimed job, saying why (with its lease token)",
    description="409 when the token does not hold the job: its lease ended and another robot "
    "claimed it, or it is finished.",
    openapi_extra=WHILE_READ_ONLY,
)
def fail_job(request: HttpRequest, job_id: int, data: JobFail) -> dict:
    job = _held_job(request, job_id)
    return job_out(jobs.fail_job(job, lease_token=data.lease_token, reason=data.reason))


@router.post(
    "/jobs/{int:job_id}/extend",
    response=answers({200: JobOut}, 400, *REFUSALS, 409, 422),
    summary="Extend a claimed job's lease (with its lease token)",
    description="The lease now ends lease_seconds from now (10 to 3600), for a robot working "
    "longer than it thought; the answer has the new lease_until, never the token. 409 when the "
    "token does not hold the job: its lease ended and another robot claimed it, or it is "
    "finished (the message says which).",
    openapi_extra=WHILE_READ_ONLY,
)
def extend_job_lease(request: HttpRequest, job_id: int, data: JobExtend) -> dict:
    job = _held_job(request, job_id)
    return job_out(
        jobs.extend_lease(job, lease_token=data.lease_token, lease_seconds=data.lease_seconds)
    )


@router.post(
    "/jobs/{int:job_id}/retry-delivery",
    response=answers({200: JobOut}, *REFUSALS, 409),
    summary="Retry a failed webhook delivery (same webhook-id)",
    description="Needs Processes - Manage, as the Retry button. 409 when the delivery has "
    "not failed (delivered, still retrying, or no webhook).",
)
def retry_job_delivery(request: HttpRequest, job_id: int) -> dict:
    job, _ = scoped_job(request, job_id, RERUN_JOBS)
    if not retry_delivery(job):
        raise Conflict(f"Job {job.pk}'s delivery has not failed: there is nothing to retry.")
    job_id = job.pk
    transaction.on_commit(lambda: enqueue_deliveries([job_id]))
    return job_out(job)


@router.post(
    "/jobs/{int:job_id}/replay",
    response=answers({201: JobOut}, *REFUSALS),
    summary="Replay the job's event: a new job of its trigger's process",
    description="Needs Processes - Manage, as retry-delivery. The new job (replay_of: the "
    "event's first job) is delivered like any job: to the webhook with a new webhook-id, "
    "and/or in the job queue. Its trigger's process now may differ from the job's.",
)
def replay_job_event(request: HttpRequest, job_id: int):
    job, _ = scoped_job(request, job_id, RERUN_JOBS)
    event = job.event
    event.trigger = Trigger.objects.select_related("process").get(pk=job.trigger_id)
    made = replay.replay_event(event, on_new_job=enqueue_deliveries)
    return Status(201, job_out(Job.objects.select_related("trigger", "event").get(pk=made.pk)))
