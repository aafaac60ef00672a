"""A rolling deploy: workers with only v2 and workers with only v1 of a flow, side by side, on one queue.

Each job runs on the version it started on, and only a process that has
that version runs it; the other leaves it pending (saying why) and the
sweep sends it again until the right one takes it.
"""

from __future__ import annotations

import subprocess

import pytest

from envoy_django import register, scheduler
from envoy_django.models import Job, Step
from envoy_django.registry import unregister
from envoy_django.testing.processes import wait_until
from tests.testapp.flows import _VERSIONED

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_old_and_new_workers_each_run_the_jobs_of_their_own_version(workers):
    unregister("versioned", 2)
    try:
        old = scheduler.schedule("versioned")  # started before the deploy: v1
    finally:
        register("versioned", _VERSIONED[2], version=2)
    new_workers = workers.start(extra_env={"ENVOY_TEST_VERSIONS": "2"}, name="new")

    def left_alone():
        job = Job.objects.get(pk=old)
        return "version 1 is not registered" in job.pending_reason and job

    job = wait_until(left_alone, what="a v2-only worker to leave the v1 job alone")
    assert job.status == "pending" and not Step.objects.filter(job_id=old).exists()

    new = scheduler.schedule("versioned")  # after the deploy: v2, which the old worker lacks
    old_workers = workers.start(extra_env={"ENVOY_TEST_VERSIONS": "1"}, name="old")
    wait_until(lambda: set(Job.objects.filter(pk__in=[old, new]).values_list("status", flat=True)) == {"blocking"},
               what="both jobs to reach their wait, each on a worker that has its version")
    for job_id in (old, new):
        scheduler.resolve_blocking_job(job_id, "go", "ok")
    wait_until(lambda: set(Job.objects.filter(pk__in=[old, new]).values_list("status", flat=True)) == {"done"},
               what="both jobs to finish")

    assert (Job.objects.get(pk=old).output, Job.objects.get(pk=new).output) == ("v1: ok", "v2: ok")
    assert [s.state for s in Step.objects.filter(job_id=old).order_by("pk")] == ["Wait", "Finish"]
    assert [s.state for s in Step.objects.filter(job_id=new).order_by("pk")] == ["Await", "Finish"]
    for job_id, supervisor in ((old, old_workers), (new, new_workers)):
        ran_in = {owner.split(":")[1] for owner in Step.objects.filter(job_id=job_id).values_list("worker", flat=True)}
        assert ran_in <= session_pids(supervisor.pid), job_id


def session_pids(leader: int) -> set[str]:
    """The pids of the supervisor ``leader`` and its workers (each supervisor runs in a session of its own)."""
    out = subprocess.run(["ps", "-o", "pid=", "--sid", str(leader)], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}
