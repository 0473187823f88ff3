"""The job queue robots pull (a process with ``job_queue``): list the jobs
waiting, claim one with a lease, then complete it or fail it.

- A claim is a conditional UPDATE on the job's row: the row moves only if it
  is still as the claimer read it (pending, or claimed under a lease that
  has ended, by the same lease token), so two robots never hold one job; the
  one that loses tries the next job.
- The lease is a random token, handed to the claimer alone. Only that token
  completes or fails the job, or extends its lease (a robot working longer
  than it thought); once the lease ends another robot may claim the job,
  and from then the first token is refused. A robot whose lease ended with
  nobody claiming meanwhile may still finish its job, or extend its lease.
  One rule says whether a token holds a job (``held_with``), one
  conditional UPDATE applies it to each of these writes, so that an
  extension and a claim at the lease's end never both win.
- Permissions and the folder scope are the caller's to ask (the API:
  Jobs - View, and Connections - Use to claim and finish).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone

from connections.models import Job, Process

DEFAULT_LEASE_SECONDS = 300
MIN_LEASE_SECONDS = 10
MAX_LEASE_SECONDS = 3600
RESULT_LENGTH = Job._meta.get_field("result").max_length
# Jobs read per round of a claim, and rounds before giving up (each lost
# row means another robot took it: the next round reads again).
CANDIDATES = 10
ROUNDS = 5


class NoJobQueue(Exception):
    """The process is not started by a job queue: its jobs go by webhook."""

    def __init__(self, process: Process):
        super().__init__(
            f"{process.name} has no job queue: its jobs are delivered by webhook. "
            "Let robots pull its jobs on the process's page first."
        )


class LeaseLost(Exception):
    """The lease token does not hold the job: it was never claimed with it,
    its lease ended and another robot claimed it, or it is finished. The
    message says which, from ``job`` as it is now."""

    def __init__(self, job: Job):
        if job.state in (Job.State.COMPLETED, Job.State.FAILED):
            why = f"it is {job.get_state_display().lower()} already"
        elif job.state == Job.State.CLAIMED:
            why = "its lease ended and another robot claimed it (or the token is not this job's)"
        else:
            why = "nobody holds it: claim it first"
        super().__init__(f"Job {job.pk} is not held with this lease token: {why}.")


@dataclass(frozen=True)
class Claimed:
    """A job just claimed, and the token that completes or fails it (shown
    to the claimer only)."""

    job: Job
    lease_token: str


def claimable(now: datetime) -> Q:
    """Waiting jobs, and claimed ones whose lease has ended."""
    return Q(state=Job.State.PENDING) | Q(state=Job.State.CLAIMED, lease_until__lt=now)


def pending_jobs(process: Process, *, now: datetime | None = None) -> QuerySet[Job]:
    """The process's jobs a robot may claim now, oldest first (the index
    job_process_state)."""
    now = now or timezone.now()
    return (
        Job.objects.filter(claimable(now), process=process)
        .select_related("event", "trigger")
        .order_by("created_at", "pk")
    )


def clean_lease_seconds(seconds: int | None) -> int:
    if seconds is None:
        return DEFAULT_LEASE_SECONDS
    if not MIN_LEASE_SECONDS <= seconds <= MAX_LEASE_SECONDS:
        raise ValidationError(
            {"lease_seconds": f"A lease lasts {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS} seconds."}
        )
    return seconds


def require_queue(process: Process) -> None:
    """NoJobQueue unless robots pull the process's jobs."""
    if not process.job_queue:
        raise NoJobQueue(process)


def take(job_id: int, *, state: str, owner: str, lease: timedelta) -> str | None:
    """Claim one job if its row is still as read (``state``, ``owner``) and
    claimable: the new lease token, or None when another robot was first."""
    now = timezone.now()
    token = secrets.token_urlsafe(32)
    won = Job.objects.filter(claimable(now), pk=job_id, state=state, lease_owner=owner).update(
        state=Job.State.CLAIMED, lease_owner=token, lease_until=now + lease, claimed_at=now
    )
    return token if won else None


def claim_job(process: Process, *, lease_seconds: int | None = None) -> Claimed | None:
    """The oldest job of the process a robot may claim, claimed for
    ``lease_seconds``; None when none waits. NoJobQueue for a process
    without a job queue; ValidationError for a lease out of bounds."""
    require_queue(process)
    lease = timedelta(seconds=clean_lease_seconds(lease_seconds))
    for _ in range(ROUNDS):
        candidates = list(
            pending_jobs(process).values_list("pk", "state", "lease_owner")[:CANDIDATES]
        )
        if not candidates:
            return None
        for job_id, state, owner in candidates:
            token = take(job_id, state=state, owner=owner, lease=lease)
            if token is not None:
                job = Job.objects.select_related("event", "trigger", "process").get(pk=job_id)
                return Claimed(job, token)
    return None


def held_with(lease_token: str) -> Q:
    """The jobs ``lease_token`` holds: claimed with it. Whether the lease has
    ended does not matter: until another robot claims the job (which gives
    it a new token) the token still holds it. A claimed job always has a
    token: an empty one holds nothing."""
    return Q(state=Job.State.CLAIMED, lease_owner=lease_token)


def _held_update(job: Job, lease_token: str, **changes) -> Job:
    """``changes`` written to the job only while ``lease_token`` holds it
    (one conditional UPDATE); the job as it is now. LeaseLost when the token
    does not hold it."""
    held = Job.objects.filter(held_with(lease_token), pk=job.pk).update(**changes)
    job.refresh_from_db()
    if not held:
        raise LeaseLost(job)
    return job


def _finish(job: Job, lease_token: str, state: str, result: str) -> Job:
    return _held_update(
        job,
        lease_token,
        state=state,
        result=result[:RESULT_LENGTH],
        finished_at=timezone.now(),
        lease_until=None,
    )


def complete_job(job: Job, *, lease_token: str, result: str = "") -> Job:
    """The robot holding the lease says the job is done (``result``: what it
    did, in a few words). LeaseLost when the token does not hold the job."""
    return _finish(job, lease_token, Job.State.COMPLETED, (result or "").strip())


def fail_job(job: Job, *, lease_token: str, reason: str) -> Job:
    """The robot holding the lease says the job failed, and why (required).
    LeaseLost when the token does not hold the job."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the job failed."})
    return _finish(job, lease_token, Job.State.FAILED, reason)


def extend_lease(job: Job, *, lease_token: str, lease_seconds: int) -> Job:
    """The robot holding the lease keeps the job longer: its lease now ends
    ``lease_seconds`` from now (the claim's bounds; not added to the old
    end). The job, with its new ``lease_until``. LeaseLost when the token
    does not hold the job (as complete and fail); ValidationError for a
    lease out of bounds."""
    lease = timedelta(seconds=clean_lease_seconds(lease_seconds))
    return _held_update(job, lease_token, lease_until=timezone.now() + lease)
