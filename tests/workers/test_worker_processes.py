"""Two real worker processes: throughput without duplicates, and recovery from SIGKILL and FLUSHALL."""

from __future__ import annotations

import os
import signal

import pytest
from django.db.models import Count

from envoy_django import scheduler
from envoy_django.models import Job, Step
from envoy_django.testing.processes import wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _all_finished(ids):
    return lambda: Job.objects.filter(pk__in=ids, status__in=["done", "failed", "cancelled"]).count() == len(ids)


def test_two_workers_run_200_jobs_with_each_transition_once(workers):
    workers.start()
    workers.start()
    ids = [scheduler.schedule("ten_states") for _ in range(200)]
    wait_until(_all_finished(ids), what="200 jobs to finish")

    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"done"}
    per_job = Step.objects.filter(job_id__in=ids, error="").values("job_id").annotate(n=Count("id"))
    assert {row["n"] for row in per_job} == {10}
    duplicates = (
        Step.objects.filter(job_id__in=ids, error="")
        .values("job_id", "number", "phase").annotate(n=Count("id")).filter(n__gt=1)
    )
    assert not duplicates.exists()
    # No phase of a job overlapped another phase of the same job (on any worker).
    for job_id in ids:
        steps = list(Step.objects.filter(job_id=job_id).order_by("pk"))
        for earlier, later in zip(steps, steps[1:], strict=False):
            assert later.started_at >= earlier.finished_at
    assert len(set(Step.objects.filter(job_id__in=ids).values_list("worker", flat=True))) >= 2


def test_job_of_a_killed_worker_finishes_on_another(workers):
    workers.start()
    workers.start()
    job_id = scheduler.schedule("slow", {"seconds": 4})

    def in_slow_state():
        job = Job.objects.get(pk=job_id)
        return job.status == "running" and job.state == "Slow"

    wait_until(in_slow_state, what="the job to enter its slow state")
    owner = Job.objects.get(pk=job_id).lease_owner
    victim_pid = int(owner.split(":")[1])
    os.kill(victim_pid, signal.SIGKILL)

    wait_until(lambda: Job.objects.get(pk=job_id).status == "done", what="recovery after SIGKILL")
    steps = list(Step.objects.filter(job_id=job_id, error="").order_by("pk"))
    assert [s.state for s in steps] == ["Before", "Slow", "After"]
    assert steps[0].worker == owner  # committed before the kill: kept, not re-run
    assert steps[1].worker != owner  # the state in flight ran again elsewhere


def test_every_pending_job_finishes_after_redis_flushall(workers, redis_conn):
    ids = [scheduler.schedule("ten_states") for _ in range(20)]
    assert redis_conn.dbsize() > 0
    redis_conn.flushall()
    workers.start(concurrency=2)
    wait_until(_all_finished(ids), what="jobs lost from Redis to be recovered")
    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"done"}


def test_sigterm_finishes_the_transition_in_flight_then_hands_the_job_back(workers):
    supervisor = workers.start()
    job_id = scheduler.schedule("slow", {"seconds": 2})
    wait_until(lambda: Job.objects.get(pk=job_id).state == "Slow", what="the job to enter its slow state")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0

    job = Job.objects.get(pk=job_id)
    assert job.status == "pending" and job.lease_owner == ""
    assert list(Step.objects.filter(job_id=job_id).values_list("state", flat=True)) == ["Before", "Slow"]

    workers.start()
    wait_until(lambda: Job.objects.get(pk=job_id).status == "done", what="the job to finish on a new worker")
    assert list(Step.objects.filter(job_id=job_id).order_by("pk").values_list("state", flat=True)) == [
        "Before", "Slow", "After",
    ]


def test_a_worker_on_several_queues_runs_the_routed_flows_and_the_rest(workers):
    workers.start(queues=["envoy-priority", "envoy"])
    ids = [scheduler.schedule("urgent_child", 2), scheduler.schedule("child", 3)]
    ids += scheduler.schedule_many([("urgent_child", i) for i in range(5)])
    wait_until(_all_finished(ids), what="the jobs of both queues to finish")
    assert [scheduler.get_job(job_id).output for job_id in ids[:2]] == [4, 6]
