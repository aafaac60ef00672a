"""Cancel and fail cascades, retries with their history, run_at, idempotency."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.models import Escalation, Job, Step, Wait
from tests.testapp import flows

pytestmark = pytest.mark.django_db(transaction=True)


def _descendants(job_id):
    return Job.objects.filter(parent_id=job_id)


def test_cancel_cascades_to_descendants_and_escalations():
    parent = scheduler.schedule("parent_of_waiting_child")
    child = _descendants(parent).get()
    assert child.status == "blocking"
    scheduler.cancel_job(parent)
    child.refresh_from_db()
    assert scheduler.get_job(parent).status == "cancelled"
    assert child.status == "cancelled"
    assert set(Wait.objects.filter(job__in=[parent, child.pk]).values_list("status", flat=True)) == {"cancelled"}


def test_cancelled_child_resolves_parent_wait_as_cancelled():
    parent = scheduler.schedule("parent_of_waiting_child")
    child = _descendants(parent).get()
    scheduler.cancel_job(child.pk)
    job = scheduler.get_job(parent)
    assert job.status == "done"
    wait = Wait.objects.get(job_id=parent)
    assert wait.status == "cancelled"


def test_fail_job_records_reason_and_cancels_children():
    parent = scheduler.schedule("parent_of_waiting_child")
    scheduler.fail_job(parent, "operator said no")
    job = scheduler.get_job(parent)
    assert (job.status, job.error) == ("failed", "operator said no")
    assert _descendants(parent).get().status == "cancelled"


def test_cancel_pending_escalation():
    job_id = scheduler.schedule("family", {"children": [1]})
    scheduler.resolve_blocking_job(job_id, "payment", 1)
    scheduler.cancel_job(job_id)
    assert Escalation.objects.get(job_id=job_id).status == "cancelled"


def test_retries_then_success():
    flows.calls.clear()
    job = scheduler.get_job(scheduler.schedule("flaky", 2))
    assert job.status == "done"
    assert job.output == 3
    attempts = list(Step.objects.filter(job=job).order_by("pk").values_list("attempt", "error"))
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert "flaky failure 1" in attempts[0][1] and attempts[2][1] == ""


def test_retries_exhausted_fail_with_traceback():
    flows.calls.clear()
    with override_settings(ENVOY={"MAX_RETRIES": 2}):
        job = scheduler.get_job(scheduler.schedule("flaky", 10))
    assert job.status == "failed"
    assert flows.calls["flaky"] == 3  # 1 + MAX_RETRIES
    assert job.error_type == "RuntimeError"
    assert "flaky failure 3" in job.error
    assert "Traceback" in job.traceback and "_flaky" in job.traceback


def test_retry_job_resumes_a_failed_job_from_its_checkpoint():
    flows.calls.clear()
    with override_settings(ENVOY={"MAX_RETRIES": 0}):
        job_id = scheduler.schedule("flaky", 1)
    assert scheduler.get_job(job_id).status == "failed"
    scheduler.retry_job(job_id)
    job = scheduler.get_job(job_id)
    assert (job.status, job.output, job.error) == ("done", 2, "")


def test_run_at_waits_for_a_sweep_when_due():
    later = timezone.now() + dt.timedelta(hours=1)
    job_id = scheduler.schedule("hello", run_at=later)
    assert scheduler.get_job(job_id).status == "pending"
    scheduler.cleanup_orphaned_jobs()
    assert scheduler.get_job(job_id).status == "pending"
    Job.objects.filter(pk=job_id).update(run_after=timezone.now() - dt.timedelta(seconds=1))
    scheduler.cleanup_orphaned_jobs()
    assert scheduler.get_job(job_id).status == "done"


def test_idempotency_key_returns_the_same_job():
    first = scheduler.schedule("hello", "a", idempotency_key="order-1")
    second = scheduler.schedule("hello", "a", idempotency_key="order-1")
    assert first == second
    assert Job.objects.count() == 1


def test_wait_timeout_resolves_as_timeout():
    job_id = scheduler.schedule("family", {"children": [1], "timeout": 60})
    assert Wait.objects.get(job_id=job_id, wait_id="payment").expires_at is not None
    Wait.objects.filter(job_id=job_id, wait_id="payment").update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    counts = scheduler.cleanup_orphaned_jobs()
    assert counts["timed_out_waits"] == 1
    job = scheduler.get_job(job_id)
    assert job.status == "blocking"  # now on the escalation
    assert job.context["data"]["payment"]["status"] == "timeout"


def test_sweep_recovers_a_job_whose_worker_died():
    job_id = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.filter(pk=job_id).update(
        status="running", lease_owner="dead-worker", lease_expires_at=timezone.now() - dt.timedelta(seconds=1),
        run_after=None,
    )
    counts = scheduler.cleanup_orphaned_jobs()
    assert counts["expired_leases"] == 1
    assert scheduler.get_job(job_id).status == "done"


def test_a_failed_step_records_the_phase_that_failed():
    from envoy_django import StateFlow, register
    from envoy_django.registry import unregister

    def boom(ctx):
        raise RuntimeError("exit failed")

    register("fails_on_exit", StateFlow([{"name": "A", "on_state": lambda ctx: ctx, "on_exit": boom}]))
    try:
        with override_settings(ENVOY={"MAX_RETRIES": 0}):
            job = scheduler.get_job(scheduler.schedule("fails_on_exit"))
    finally:
        unregister("fails_on_exit")
    assert list(job.steps.order_by("pk").values_list("phase", "error")) == [
        ("state", ""), ("exit", "on_exit of state 'A' raised RuntimeError: exit failed"),
    ]
