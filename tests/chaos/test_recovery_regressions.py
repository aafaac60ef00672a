"""Regressions for what the chaos run (chaos/run.py) found in the worker and the sweep.

1. RQ forked its scheduler from whichever worker process took the lock. A
   SIGKILLed worker left it behind as an orphan (still holding the lock), and
   it outlived the supervisor's shutdown. The supervisor now runs it.
2. When the process holding RQ's scheduler lock died with it (the whole
   ``envoy_worker`` killed), delayed retries waited in RQ's scheduled
   registry until the lock expired and a worker's maintenance (every 10
   minutes) started another scheduler: the sweep counted them as held by the
   queue. It now enqueues a scheduled message that is overdue by the grace.
3. While Redis was down, the supervisor restarted its dying workers in a
   tight loop (dozens per second, each with a traceback). It now backs off.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.dispatch.rq_queue import get_queue
from envoy_django.models import Job
from envoy_django.scheduler.sweep import cleanup_orphaned_jobs
from envoy_django.testing.processes import wait_until
from envoy_django.testing.worker import drain
from envoy_django.worker import Supervisor

RQ_MODE = {"EXECUTION": "rq", "RETRY_BACKOFF": 60.0, "RETRY_BACKOFF_MAX": 60.0, "LEASE_SECONDS": 30.0}


@pytest.mark.django_db(transaction=True)
def test_sweep_enqueues_a_retry_its_dead_scheduler_never_moved(redis_conn):
    from tests.testapp import flows

    flows.calls.clear()
    with override_settings(ENVOY=RQ_MODE):
        job_id = scheduler.schedule("flaky", 1)
        drain()  # fails once; the retry waits in RQ's scheduled registry (no scheduler runs here)
        job = scheduler.get_job(job_id)
        scheduled = get_queue().scheduled_job_registry.get_job_ids()
        assert job.status == "pending" and len(scheduled) == 1 and scheduled[0].startswith(f"envoy-{job_id}-")

        # Due, but within the grace: RQ's scheduler is trusted to move it.
        sent = timezone.now() - dt.timedelta(seconds=65)
        Job.objects.filter(pk=job_id).update(run_after=timezone.now() - dt.timedelta(seconds=5), enqueued_at=sent)
        assert cleanup_orphaned_jobs()["requeued"] == 0
        assert get_queue().count == 0

        # Overdue by more than the grace (LEASE_SECONDS): its scheduler is gone.
        Job.objects.filter(pk=job_id).update(run_after=timezone.now() - dt.timedelta(seconds=31))
        assert cleanup_orphaned_jobs()["requeued"] == 1
        assert get_queue().count == 1
        assert cleanup_orphaned_jobs()["requeued"] == 0  # the new message is held: no second one
        drain()
    assert scheduler.get_job(job_id).status == "done"


class _Dead:
    pid = 0
    exitcode = 1

    def is_alive(self) -> bool:
        return False


def test_supervisor_backs_off_restarting_workers_that_die_at_once():
    supervisor = Supervisor(1)
    supervisor.children = [_Dead()]
    spawned: list[float] = []

    def spawn(slot: int) -> _Dead:
        spawned.append(time.monotonic())
        supervisor._started[slot] = time.monotonic()
        return _Dead()

    supervisor._spawn = spawn  # type: ignore[method-assign]
    supervisor._started[0] = time.monotonic()
    delays = []
    for _ in range(6):
        supervisor._restart_dead()  # notes the exit, schedules the restart
        delays.append(round(supervisor._restart_at[0] - time.monotonic(), 1))
        supervisor._restart_at[0] = time.monotonic()  # skip the wait
        supervisor._restart_dead()  # restarts
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]
    assert len(spawned) == 6
    # A worker that lived long is restarted at once, and the backoff starts afresh.
    supervisor._started[0] = time.monotonic() - Supervisor.QUICK_EXIT - 1
    supervisor._restart_dead()
    assert 0 not in supervisor._restart_at and len(spawned) == 7


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_supervisor_runs_rqs_scheduler_and_leaves_no_process_behind(workers, redis_conn):  # noqa: F811
    from tests.testapp import flows

    flows.calls.clear()
    supervisor = workers.start(concurrency=2)
    wait_until(lambda: len(_descendants(supervisor.pid)) == 2, what="two worker processes")
    wait_until(lambda: redis_conn.get("rq:scheduler-lock:envoy") is not None, what="RQ's scheduler lock")
    name = redis_conn.get("rq:scheduler-lock:envoy").decode()
    wait_until(lambda: redis_conn.hget(f"rq:scheduler:{name}", "pid") is not None, what="the lock holder's pid")
    assert int(redis_conn.hget(f"rq:scheduler:{name}", "pid")) == supervisor.pid
    workers_only = _descendants(supervisor.pid)
    assert all(not _descendants(pid) for pid in workers_only), "a worker forked a process (RQ's scheduler?)"

    job_id = scheduler.schedule("flaky", 1)  # its retries go through RQ's scheduled registry
    wait_until(lambda: scheduler.get_job(job_id).status == "done", what="the retried job")

    os.kill(workers_only[0], signal.SIGKILL)  # a worker dies: nothing of it stays behind
    wait_until(lambda: len(_descendants(supervisor.pid)) == 2 and workers_only[0] not in _descendants(supervisor.pid),
               what="a replacement worker")
    survivors = _descendants(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(timeout=30)
    wait_until(lambda: not any(map(_alive, survivors)), timeout=10, what="the workers to exit with the supervisor")
    assert redis_conn.get("rq:scheduler-lock:envoy") is None  # released on the way out


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("delay", [0.004, 0.005, 0.006, 0.008])
def test_warm_shutdown_reaches_a_worker_started_while_it_arrives(workers, delay):  # noqa: F811
    """A worker forked just before SIGTERM ran the supervisor's inherited handler, which swallowed it:
    the supervisor then waited for it forever (16 of 20 runs hung at this delay before the fix)."""
    supervisor = workers.start(concurrency=2)
    wait_until(lambda: len(_descendants(supervisor.pid)) == 2, what="two worker processes")
    first, *_ = processes = set(_descendants(supervisor.pid))
    try:
        time.sleep(0.3)  # let them reach RQ's work loop
        os.kill(first, signal.SIGKILL)  # the supervisor starts another...
        time.sleep(delay)  # ...while the warm shutdown arrives
        processes |= set(_descendants(supervisor.pid))
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=15)
    finally:
        for pid in processes | set(_descendants(supervisor.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
