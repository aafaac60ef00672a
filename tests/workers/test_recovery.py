"""The recovery bound holds on every path, and a sweeper runs in every execution mode.

- A worker SIGKILLed between taking a message off the queue and claiming
  the job: the message sat in the dead worker's RQ registry, and the sweep,
  which trusted the queue, waited for RQ's own maintenance (~60 s). The
  sweep now sends again any pending job nobody claimed within LEASE_SECONDS.
- A worker that dies inside the same transition every time: the job fails
  as a poison job after MAX_CLAIMS claims instead of looping forever.
- Immediate mode had no sweeper at all: ``envoy_worker`` refused to start
  without Redis. It now runs the sweep, and the jobs it finds, in-process.
"""

from __future__ import annotations

import datetime as dt
import signal

import pytest
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.models import Job, JobStatus, Wait
from envoy_django.scheduler import transitions
from envoy_django.testing.processes import WorkerProcesses, wait_until
from tests.support import LEASE_SECONDS, ROOT, SWEEP_INTERVAL, worker_env

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# The worker's tick, its restart after a kill, and a busy 2-core machine; before
# the fix, this path took a minute.
SLACK = 15.0


def start_workers_that_die_at(workers, tmp_path, point: str, job_id: str) -> dt.datetime:
    """Start the workers with the fault ``point`` set for the job; wait until one dies there, and say when."""
    faults = tmp_path / "faults"
    faults.write_text(f"{point} {job_id}\n")
    workers.start(extra_env={"ENVOY_FAULTS": str(faults)})
    wait_until(lambda: faults.read_text().startswith("fired"), what=f"a worker to reach {point} and die")
    return dt.datetime.fromtimestamp(float(faults.read_text().split()[-1]), tz=dt.UTC)


def test_a_worker_killed_between_dequeue_and_claim_is_recovered_within_the_bound(workers, tmp_path):
    job_id = scheduler.schedule("hello", "again")  # waits in the queue: no worker runs yet
    killed_at = start_workers_that_die_at(workers, tmp_path, "before_claim", job_id)
    wait_until(lambda: Job.objects.get(pk=job_id).status == JobStatus.DONE, what="the job to finish")
    job = Job.objects.get(pk=job_id)
    assert job.output == "Hello again! Bye!"
    recovery = (job.started_at - killed_at).total_seconds()
    assert recovery <= LEASE_SECONDS + SWEEP_INTERVAL + SLACK, recovery


def test_a_worker_that_dies_in_the_same_transition_every_time_fails_the_job_as_poison(workers):
    workers.start(extra_env={"ENVOY_TEST_LET_WORKERS_DIE": "1", "ENVOY_TEST_MAX_CLAIMS": "3"})
    job_id = scheduler.schedule("misbehave", "die")
    wait_until(lambda: Job.objects.get(pk=job_id).status == JobStatus.FAILED, timeout=180,
               what="the poison job to fail")
    job = Job.objects.get(pk=job_id)
    assert (job.error_type, job.claims) == ("PoisonJob", 3)
    assert "claimed 3 times without committing anything" in job.error and "'Misbehave'" in job.error


@pytest.fixture
def immediate_worker(transactional_db):
    """``envoy_worker`` in immediate mode, with no Redis configured at all."""
    env = {key: value for key, value in worker_env("immediate").items() if key != "REDIS_URL"}
    handle = WorkerProcesses("tests.settings", cwd=ROOT, env=env)
    try:
        yield handle
    finally:
        handle.stop()


def test_envoy_worker_in_immediate_mode_runs_what_nothing_else_would(immediate_worker):
    process = immediate_worker.start()
    # Due later: immediate mode leaves it to the sweep.
    delayed = scheduler.schedule("hello", "later", run_at=timezone.now() + dt.timedelta(seconds=1))
    # Blocked on a wait that times out in a second.
    waiting = scheduler.schedule("family", {"children": [1], "timeout": 1})
    # Claimed by a process that died: its lease runs out.
    crashed = scheduler.schedule("hello", "crashed", run_at=timezone.now() + dt.timedelta(days=1))
    Job.objects.filter(pk=crashed).update(run_after=None)
    assert transitions.claim(crashed, owner="died-mid-run") is not None
    Job.objects.filter(pk=crashed).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    # Pending, sent long ago, never claimed (say, its process died before running it).
    stranded = scheduler.schedule("hello", "stranded", run_at=timezone.now() + dt.timedelta(days=1))
    Job.objects.filter(pk=stranded).update(run_after=None, enqueued_at=timezone.now() - dt.timedelta(minutes=5))

    wait_until(lambda: Job.objects.filter(pk__in=[delayed, crashed, stranded], status="done").count() == 3,
               what="the sweeper to run the due, crashed and stranded jobs")
    wait_until(lambda: Wait.objects.get(job_id=waiting, wait_id="payment").status == "timeout",
               what="the sweeper to time out the wait")
    wait_until(lambda: Job.objects.get(pk=waiting).escalations.exists(), what="the timed-out job to move on")
    assert Job.objects.get(pk=stranded).output == "Hello stranded! Bye!"

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_a_worker_killed_before_running_the_parent_its_child_resumed_is_recovered_within_the_bound(workers, tmp_path):
    """The resumed parent goes to the worker that ended its child, with no message: the sweep is its net."""
    top = scheduler.schedule("nested", 1)  # waits in the queue: no worker runs yet
    killed_at = start_workers_that_die_at(workers, tmp_path, "before_running_woken", top)
    wait_until(lambda: Job.objects.get(pk=top).status == JobStatus.DONE, what="the parent to finish")
    parent = Job.objects.get(pk=top)
    assert parent.output == 1
    resumed = parent.steps.order_by("pk").last()
    recovery = (resumed.started_at - killed_at).total_seconds()
    assert recovery <= LEASE_SECONDS + SWEEP_INTERVAL + SLACK, recovery
