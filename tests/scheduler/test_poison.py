"""Poison jobs fail visibly: nothing a handler or the database does leaves a job running with nobody running it.

Each case used to escape the run loop (RecursionError, ValueError,
TypeError, DataError) and leave the job ``running`` with its lease, re-run
by the sweep after every expiry, forever, with no error shown anywhere.
"""

from __future__ import annotations

import logging

import pytest
from django.db import DataError, OperationalError
from django.test import override_settings
from django.utils import timezone

from envoy_django import scheduler, signals
from envoy_django.models import Job, JobStatus
from envoy_django.scheduler import transitions
from envoy_django.scheduler.executor import run_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("what, error_type, message", [
    ("bigint_output", "PayloadError", "integer of more than 4300 digits"),
    ("deep_data", "PayloadError", "nested deeper than 256 levels"),
    ("cyclic_output", "PayloadError", "nested deeper than 256 levels, or a cycle"),
    ("long_wait_id", "FlowError", "at most 100 characters"),
    ("long_user", "FlowError", "at most 150 characters"),
    ("inf_timeout", "FlowError", "finite number of seconds"),
    ("nan_timeout", "FlowError", "finite number of seconds"),
    ("huge_timeout", "FlowError", "finite number of seconds"),
    ("nul_output", "PayloadError", "NUL character"),
])
def test_a_handler_that_stores_what_no_column_holds_fails_the_job_at_once(what, error_type, message):
    job = scheduler.get_job(scheduler.schedule("misbehave", what))
    assert (job.status, job.error_type) == ("failed", error_type)
    assert message in job.error and "'Misbehave'" in job.error
    assert job.lease_owner == "" and job.lease_expires_at is None
    step = job.steps.get()
    assert step.error == job.error and step.state == "Misbehave" and step.traceback


def test_a_progress_message_that_is_not_text_is_converted():
    job = scheduler.get_job(scheduler.schedule("misbehave", "progress_int_message"))
    assert (job.status, job.progress, job.progress_message) == ("done", 0.5, "123")


def _break_once(monkeypatch, exc: Exception) -> list[int]:
    """The next transition's commit raises ``exc`` (then commits work again)."""
    raised: list[int] = []
    advance = transitions.Held.advance

    def broken(self, *args, **kwargs):
        if not raised:
            raised.append(1)
            raise exc
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(transitions.Held, "advance", broken)
    return raised


def test_a_database_error_that_would_recur_fails_the_job_with_the_reason(monkeypatch, caplog):
    failed = []
    receiver = lambda sender, job, error, **kwargs: failed.append(error)  # noqa: E731
    signals.job_failed.connect(receiver)
    _break_once(monkeypatch, DataError("value too long for type character varying(200)"))
    try:
        with caplog.at_level(logging.ERROR, logger="envoy_django.jobs"):
            job = scheduler.get_job(scheduler.schedule("hello"))
    finally:
        signals.job_failed.disconnect(receiver)
    assert (job.status, job.error_type) == ("failed", "DataError")
    assert "value too long" in job.error and "DataError" in job.traceback
    assert job.steps.get().error == job.error  # where it happened: the first state
    assert failed == [job.error]
    record = next(r for r in caplog.records if r.name == "envoy_django.jobs")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert (record.job_id, record.flow, record.state) == (str(job.pk), "hello", "Start")


def test_an_engine_bug_fails_the_job_instead_of_escaping(monkeypatch):
    from envoy_django.flow import Context

    def overflow(self):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Context, "serialize", overflow)
    job = scheduler.get_job(scheduler.schedule("hello"))
    assert (job.status, job.error_type) == ("failed", "RecursionError")


def test_a_lost_connection_hands_the_job_back_and_it_runs_again(monkeypatch):
    raised = _break_once(monkeypatch, OperationalError("server closed the connection unexpectedly"))
    job = scheduler.get_job(scheduler.schedule("hello", "again"))
    assert raised == [1]
    assert (job.status, job.output, job.claims) == ("done", "Hello again! Bye!", 0)


def test_a_failure_that_cannot_be_recorded_waits_for_the_database_without_counting_as_poison(monkeypatch):
    """Code deployed ahead of its migrations: every write of this job's history fails."""
    from django.db import ProgrammingError

    from envoy_django.models import Step

    def no_column(*args, **kwargs):
        raise ProgrammingError('column "notes" of relation "envoy_django_step" does not exist')

    monkeypatch.setattr(Step.objects, "create", no_column)  # a failure's Step
    monkeypatch.setattr(transitions.Held, "advance", no_column)  # a transition's Step
    job = scheduler.get_job(scheduler.schedule("hello", "later"))
    assert (job.status, job.claims, job.error, job.steps.count()) == ("pending", 0, "", 0)
    assert job.run_after is not None  # a lease's time from now: the sweep runs it then

    monkeypatch.undo()  # the migration ran
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
    scheduler.cleanup_orphaned_jobs()
    assert scheduler.get_job(job.pk).output == "Hello later! Bye!"


def test_a_job_claimed_max_claims_times_without_progress_fails_as_poison(redis_conn):
    with override_settings(ENVOY={"EXECUTION": "rq", "MAX_CLAIMS": 3}):
        job_id = scheduler.schedule("hello")  # rq mode, nothing works the queue: the job stays pending
        for claim in range(3):
            # A worker claims it and dies before committing anything; its lease runs out.
            assert transitions.claim(job_id, owner=f"doomed-{claim}") is not None
            Job.objects.filter(pk=job_id).update(status=JobStatus.PENDING, lease_owner="", lease_expires_at=None)
        run_job(job_id, owner="fourth")
    job = scheduler.get_job(job_id)
    assert (job.status, job.error_type, job.claims) == ("failed", "PoisonJob", 3)
    assert "claimed 3 times without committing anything" in job.error and "'Start'" in job.error
    assert job.steps.get().error == job.error


def test_committing_a_transition_resets_the_claim_count():
    job_id = scheduler.schedule("family", {"children": [1]})
    assert scheduler.get_job(job_id).claims == 0  # blocked: the blocking transition committed
    scheduler.resolve_blocking_job(job_id, "payment", 1)
    assert scheduler.get_job(job_id).claims == 0
