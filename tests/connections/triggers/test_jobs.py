"""The job queue robots pull: oldest first, one robot per job (a claim is a
conditional UPDATE, raced here on PostgreSQL with the guard and without it),
only the lease token finishes a job, an ended lease frees it again."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from connections.models import Job, TriggerEvent
from connections.triggers import configure, jobs, processes
from connections.triggers.polling import poll_trigger
from portal import api_keys
from tests.at_once import at_once, needs_a_server_database, together
from tests.connections.api.conftest import ApiClient
from tests.factories import ConnectionFactory, FolderFactory, assign

pytestmark = pytest.mark.django_db
race = pytest.mark.django_db(transaction=True)

ROBOTS = 6
# How long each robot waits between reading the jobs and claiming one: all
# of them read the same job before any claims it.
READ_TO_CLAIM_SECONDS = 0.4
# An extension raced with another robot's claim at the lease's end: rounds,
# and how much later than the other one of them starts its write in a round
# where one goes first (in the others both write at once).
EXTEND_ROUNDS = 30
HEAD_START_SECONDS = 0.02


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PORTAL_SANDBOX_ENABLED = True


@pytest.fixture
def folder():
    return FolderFactory(name="Finance")


@pytest.fixture
def process(folder):
    return processes.create_process(folder=folder, name="Book", job_queue=True).process


@pytest.fixture
def trigger(folder, process):
    connection = ConnectionFactory(folder=folder, sandbox=True, sealed=True)
    return configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=process
    )


@pytest.fixture
def add_job(trigger, process):
    def add(provider_id: str, *, age_seconds: int = 0) -> Job:
        event = TriggerEvent.objects.create(
            trigger=trigger, provider_id=provider_id, payload={"id": provider_id}
        )
        job = Job.objects.create(process=process, trigger=trigger, event=event)
        if age_seconds:
            Job.objects.filter(pk=job.pk).update(
                created_at=timezone.now() - timedelta(seconds=age_seconds)
            )
        return job

    return add


def test_oldest_first_then_none(process, add_job):
    newer = add_job("2")
    older = add_job("1", age_seconds=60)
    assert list(jobs.pending_jobs(process)) == [older, newer]
    first = jobs.claim_job(process)
    second = jobs.claim_job(process)
    assert (first.job, second.job) == (older, newer)
    assert first.lease_token != second.lease_token and len(first.lease_token) >= 40
    assert first.job.state == Job.State.CLAIMED and first.job.lease_until > timezone.now()
    assert jobs.claim_job(process) is None
    assert list(jobs.pending_jobs(process)) == []


def test_only_the_lease_token_completes_or_fails(process, add_job):
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=60)
    for token in ("", "not-the-token"):
        with pytest.raises(jobs.LeaseLost):
            jobs.complete_job(job, lease_token=token)
        with pytest.raises(jobs.LeaseLost):
            jobs.fail_job(job, lease_token=token, reason="no")
    job.refresh_from_db()
    assert job.state == Job.State.CLAIMED
    done = jobs.complete_job(job, lease_token=claimed.lease_token, result=" Booked 1 invoice ")
    assert (done.state, done.result, done.lease_until) == (
        Job.State.COMPLETED,
        "Booked 1 invoice",
        None,
    )
    assert done.finished_at is not None
    # Finished: the token holds nothing any more.
    with pytest.raises(jobs.LeaseLost):
        jobs.fail_job(job, lease_token=claimed.lease_token, reason="late")


def test_fail_needs_a_reason(process, add_job):
    job = add_job("1")
    claimed = jobs.claim_job(process)
    with pytest.raises(ValidationError) as refused:
        jobs.fail_job(job, lease_token=claimed.lease_token, reason="  ")
    assert "reason" in refused.value.message_dict
    failed = jobs.fail_job(job, lease_token=claimed.lease_token, reason="The ledger is closed.")
    assert (failed.state, failed.result) == (Job.State.FAILED, "The ledger is closed.")
    assert jobs.claim_job(process) is None  # a failed job is not claimed again


def test_an_ended_lease_frees_the_job_and_the_old_token_stops_working(process, add_job):
    job = add_job("1")
    first = jobs.claim_job(process, lease_seconds=30)
    assert jobs.claim_job(process) is None
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert list(jobs.pending_jobs(process)) == [job]
    second = jobs.claim_job(process)
    assert second.job == job and second.lease_token != first.lease_token
    with pytest.raises(jobs.LeaseLost):
        jobs.complete_job(job, lease_token=first.lease_token)
    assert jobs.complete_job(job, lease_token=second.lease_token).state == Job.State.COMPLETED


def test_a_lease_past_its_end_still_finishes_when_nobody_claimed(process, add_job):
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=10)
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert jobs.complete_job(job, lease_token=claimed.lease_token).state == Job.State.COMPLETED


def test_extend_moves_the_lease_from_now(process, add_job):
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=30)
    first_end = claimed.job.lease_until
    before = timezone.now()
    extended = jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=600)
    assert extended.state == Job.State.CLAIMED and extended.lease_owner == claimed.lease_token
    assert before + timedelta(seconds=600) <= extended.lease_until
    assert extended.lease_until <= timezone.now() + timedelta(seconds=600)
    assert extended.lease_until > first_end + timedelta(seconds=500)
    longer = Job.objects.get(pk=job.pk).lease_until
    assert longer == extended.lease_until
    # From now, not added to the old end: extending again by less shortens it.
    shorter = jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=60)
    assert shorter.lease_until < longer
    assert jobs.complete_job(job, lease_token=claimed.lease_token).state == Job.State.COMPLETED


def test_after_extending_a_claim_at_the_old_lease_end_does_not_take_the_job(
    process, add_job, monkeypatch
):
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=30)
    old_end = claimed.job.lease_until
    jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=600)
    # Another robot comes when the first lease would have ended.
    monkeypatch.setattr(timezone, "now", lambda: old_end + timedelta(seconds=1))
    assert list(jobs.pending_jobs(process)) == []
    assert jobs.claim_job(process) is None
    job.refresh_from_db()
    assert (job.state, job.lease_owner) == (Job.State.CLAIMED, claimed.lease_token)
    # Without the extension the job would have been free then.
    Job.objects.filter(pk=job.pk).update(lease_until=old_end)
    assert jobs.claim_job(process).job == job


def test_extend_with_a_wrong_token_changes_nothing(process, add_job):
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=60)
    before = Job.objects.filter(pk=job.pk).values().get()
    for token in ("", "not-the-token"):
        with pytest.raises(jobs.LeaseLost, match="not held with this lease token"):
            jobs.extend_lease(job, lease_token=token, lease_seconds=600)
    assert Job.objects.filter(pk=job.pk).values().get() == before
    assert jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=600)


def test_extend_after_another_robot_claimed_is_refused_and_it_keeps_the_job(process, add_job):
    job = add_job("1")
    first = jobs.claim_job(process, lease_seconds=30)
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    second = jobs.claim_job(process, lease_seconds=60)
    assert second.job == job
    held = Job.objects.filter(pk=job.pk).values().get()
    with pytest.raises(jobs.LeaseLost, match="another robot claimed it"):
        jobs.extend_lease(job, lease_token=first.lease_token, lease_seconds=600)
    assert Job.objects.filter(pk=job.pk).values().get() == held
    assert held["lease_owner"] == second.lease_token
    assert jobs.complete_job(job, lease_token=second.lease_token).state == Job.State.COMPLETED


def test_extend_an_ended_lease_nobody_claimed(process, add_job):
    """As complete: the token holds the job until another robot claims it."""
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=10)
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    extended = jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=60)
    assert extended.lease_until > timezone.now()
    assert jobs.claim_job(process) is None


@pytest.mark.parametrize("finish", ["complete", "fail"])
def test_extend_a_finished_job_is_refused_saying_so(process, add_job, finish):
    job = add_job("1")
    claimed = jobs.claim_job(process)
    if finish == "complete":
        jobs.complete_job(job, lease_token=claimed.lease_token)
    else:
        jobs.fail_job(job, lease_token=claimed.lease_token, reason="Closed.")
    before = Job.objects.filter(pk=job.pk).values().get()
    with pytest.raises(jobs.LeaseLost, match=f"it is {finish}.* already"):
        jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=600)
    assert Job.objects.filter(pk=job.pk).values().get() == before


def test_extend_a_job_nobody_claimed_is_refused(process, add_job):
    job = add_job("1")
    with pytest.raises(jobs.LeaseLost, match="claim it first"):
        jobs.extend_lease(job, lease_token="never-claimed", lease_seconds=60)
    assert Job.objects.get(pk=job.pk).lease_until is None


@pytest.mark.parametrize("seconds", [0, 9, 3601, -5])
def test_an_extension_out_of_bounds_is_refused(process, add_job, seconds):
    job = add_job("1")
    claimed = jobs.claim_job(process, lease_seconds=60)
    with pytest.raises(ValidationError) as refused:
        jobs.extend_lease(job, lease_token=claimed.lease_token, lease_seconds=seconds)
    assert "lease_seconds" in refused.value.message_dict
    assert Job.objects.get().lease_until == claimed.job.lease_until


@pytest.mark.parametrize("seconds", [0, 9, 3601, -5])
def test_a_lease_out_of_bounds_is_refused(process, add_job, seconds):
    add_job("1")
    with pytest.raises(ValidationError) as refused:
        jobs.claim_job(process, lease_seconds=seconds)
    assert "lease_seconds" in refused.value.message_dict
    assert Job.objects.get().state == Job.State.PENDING


def test_a_process_without_a_job_queue_has_none_to_claim(folder, add_job, trigger):
    webhook_only = processes.create_process(
        folder=folder, name="Hook", webhook_url="https://hooks.example.com/x"
    ).process
    with pytest.raises(jobs.NoJobQueue, match="has no job queue"):
        jobs.claim_job(webhook_only)


def test_a_robot_pulls_and_completes_jobs_through_the_api(
    folder, connection, add_record, make_user
):
    """Records made in the Sandbox over HTTP, polled into one job each, and a
    robot (an Automation User's key) claiming and completing them all
    through the API until none is left."""
    pulled = processes.create_process(folder=folder, name="Pulled", job_queue=True).process
    trigger = configure.create_trigger(
        connection=connection, event_key="record_created", filters={}, process=pulled
    )
    assert poll_trigger(trigger.pk).fired == 0  # from now on
    for title in ("Invoice 1", "Invoice 2", "Invoice 3"):
        add_record(title)
    assert poll_trigger(trigger.pk).fired == 3
    robot = make_user("robot")
    assign(robot, folder, "Automation User")
    api = ApiClient(api_keys.issue(owner=robot, name="runner", actor=robot).raw)
    assert api.get(f"/api/v1/processes/{pulled.pk}/jobs").json()["count"] == 3
    done = []
    while True:
        claimed = api.post(f"/api/v1/processes/{pulled.pk}/jobs/claim", {"lease_seconds": 60})
        if claimed.status_code == 204:
            break
        assert claimed.status_code == 200, claimed.content
        job = claimed.json()
        finished = api.post(
            f"/api/v1/jobs/{job['id']}/complete",
            {"lease_token": job["lease_token"], "result": f"Booked {job['event']['summary']}"},
        )
        assert finished.status_code == 200, finished.content
        done.append(job["event"]["summary"])
    assert done == ["Invoice 1", "Invoice 2", "Invoice 3"]  # oldest first
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.COMPLETED}


# --- Robots at once (PostgreSQL) ------------------------------------------


@pytest.fixture
def slow_claims(monkeypatch):
    """Every robot waits between reading the jobs and claiming one."""
    take = jobs.take

    def slow(*args, **kwargs):
        time.sleep(READ_TO_CLAIM_SECONDS)
        return take(*args, **kwargs)

    monkeypatch.setattr(jobs, "take", slow)


@race
def test_robots_at_once_one_job_one_claimer(process, add_job, slow_claims):
    needs_a_server_database()
    job = add_job("1")
    claimed, raised = at_once(lambda: jobs.claim_job(process), ROBOTS)
    assert raised == []
    winners = [c for c in claimed if c is not None]
    assert len(winners) == 1 and winners[0].job == job
    job.refresh_from_db()
    assert job.lease_owner == winners[0].lease_token


@race
def test_robots_at_once_share_the_jobs_without_a_double(process, add_job, slow_claims):
    needs_a_server_database()
    made = [add_job(str(n), age_seconds=100 - n) for n in range(ROBOTS - 2)]
    claimed, raised = at_once(lambda: jobs.claim_job(process), ROBOTS)
    assert raised == []
    won = [c.job.pk for c in claimed if c is not None]
    # Every job claimed once, and the two robots too many got none.
    assert sorted(won) == sorted(job.pk for job in made)
    assert claimed.count(None) == 2


@race
def test_without_the_conditional_update_two_robots_hold_one_job(process, add_job, monkeypatch):
    """The guard bypassed: a claim that updates the row it read whatever it
    now holds. Every robot believes it holds the one job."""
    needs_a_server_database()
    add_job("1")

    def unguarded(job_id, *, state, owner, lease):
        time.sleep(READ_TO_CLAIM_SECONDS)
        now = timezone.now()
        token = f"robot-{time.monotonic_ns()}"
        Job.objects.filter(pk=job_id).update(
            state=Job.State.CLAIMED, lease_owner=token, lease_until=now + lease, claimed_at=now
        )
        return token

    monkeypatch.setattr(jobs, "take", unguarded)
    claimed, raised = at_once(lambda: jobs.claim_job(process), ROBOTS)
    assert raised == []
    assert len([c for c in claimed if c is not None]) == ROBOTS


def _race_extend_and_claim(process, job, monkeypatch) -> list[tuple[bool, bool]]:
    """Rounds of: the job held by a robot whose lease ends now; that robot
    extends it while another claims it, started together (in turn the
    extension first, the claim first, both at once). Per round, whether the
    extension and the claim won; checks that the row agrees with each."""
    delays = {"extend": 0.0, "claim": 0.0}
    take = jobs.take

    def claim_after_its_delay(*args, **kwargs):
        time.sleep(delays["claim"])  # between reading the jobs and taking one
        return take(*args, **kwargs)

    monkeypatch.setattr(jobs, "take", claim_after_its_delay)

    def extend(token: str):
        held = Job.objects.get(pk=job.pk)
        time.sleep(delays["extend"])
        return jobs.extend_lease(held, lease_token=token, lease_seconds=600)

    outcomes = []
    for round_ in range(EXTEND_ROUNDS):
        first = ("extend", "claim", None)[round_ % 3]
        for who in delays:
            delays[who] = HEAD_START_SECONDS if first and who != first else 0.0
        token = f"first-robot-{round_}"
        now = timezone.now()
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.CLAIMED, lease_owner=token, lease_until=now, claimed_at=now
        )
        extended, claimed = together(
            partial(extend, token), partial(jobs.claim_job, process, lease_seconds=60)
        )
        for outcome in (extended, claimed):
            if isinstance(outcome, Exception) and not isinstance(outcome, jobs.LeaseLost):
                raise outcome
        extend_won, claim_won = isinstance(extended, Job), isinstance(claimed, jobs.Claimed)
        row = Job.objects.get(pk=job.pk)
        assert row.state == Job.State.CLAIMED
        if claim_won:
            assert row.lease_owner == claimed.lease_token and claimed.job == job
        if extend_won and not claim_won:
            assert row.lease_owner == token
            assert row.lease_until > timezone.now() + timedelta(seconds=590)
        outcomes.append((extend_won, claim_won))
    return outcomes


@race
def test_extend_and_a_claim_at_the_lease_end_exactly_one_wins(process, add_job, monkeypatch):
    needs_a_server_database()
    job = add_job("1")
    outcomes = _race_extend_and_claim(process, job, monkeypatch)
    assert all(extend_won != claim_won for extend_won, claim_won in outcomes), outcomes
    # The race went both ways: each of them won some rounds.
    assert {(True, False), (False, True)} <= set(outcomes), outcomes


@race
def test_without_the_token_rule_an_extension_and_a_claim_both_win(process, add_job, monkeypatch):
    """The guard bypassed: an extension that writes whoever holds the job
    now. Where the claim went first, both robots believe they hold it."""
    needs_a_server_database()
    job = add_job("1")
    monkeypatch.setattr(jobs, "held_with", lambda lease_token: Q())
    outcomes = _race_extend_and_claim(process, job, monkeypatch)
    assert (True, True) in outcomes, outcomes
