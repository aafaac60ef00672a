"""What an Envoy message leaves in Redis once a worker took it: nothing.

The worker takes Envoy's message off Redis in one round trip and runs the
job; RQ's registries, execution records and job hashes are not written for
it (PostgreSQL holds the job). An exception out of ``perform`` still reaches
RQ's exception handlers, and the worker goes on with the next message.
"""

from __future__ import annotations

import time

import django_rq.settings
import pytest
from django.test import override_settings

from envoy_django import scheduler, worker
from envoy_django.dispatch.rq_queue import get_queue
from envoy_django.models import JobStatus
from envoy_django.worker import get_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rq_mode(redis_conn):
    with override_settings(ENVOY={"EXECUTION": "rq", "RETRY_BACKOFF": 0.0, "RETRY_BACKOFF_MAX": 0.0}):
        yield redis_conn
    worker._stop.clear()  # a stop requested in a test is this process's, as in a worker


def leftovers(conn) -> dict[str, int]:
    """Everything RQ keeps about messages on the Envoy queue, by kind."""
    queue = get_queue()
    return {
        "job hashes": len(conn.keys("rq:job:*")),
        "queued": queue.count,
        "intermediate": conn.llen(queue.intermediate_queue_key),
        "started": queue.started_job_registry.count,
        "finished": queue.finished_job_registry.count,
        "failed": queue.failed_job_registry.count,
        "executions": len(conn.keys("rq:executions:*")) + len(conn.keys("rq:execution:*")),
    }


NOTHING = {"job hashes": 0, "queued": 0, "intermediate": 0, "started": 0, "finished": 0, "failed": 0,
           "executions": 0}


def test_a_worker_leaves_nothing_in_redis_for_the_jobs_it_ran(rq_mode):
    ids = [scheduler.schedule("hello", f"n{i}") for i in range(3)]
    assert leftovers(rq_mode)["queued"] == 3  # the control: the messages were there

    get_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")

    assert [scheduler.get_job(job_id).status for job_id in ids] == [JobStatus.DONE] * 3
    assert leftovers(rq_mode) == NOTHING


handled: list[tuple[str, str]] = []


def recording_handler(rq_job, exc_type, exc_value, traceback) -> bool:
    """An exception handler a site names in ``RQ = {"EXCEPTION_HANDLERS": [...]}``."""
    handled.append((rq_job.args[0], str(exc_value)))
    return True


def test_an_exception_out_of_perform_reaches_rqs_handlers_and_the_next_message_runs(rq_mode, monkeypatch):
    broken = scheduler.schedule("hello", "broken")
    fine = scheduler.schedule("hello", "fine")
    real_run = worker.run_job_then_woken

    def run(job_id, **kwargs):
        if job_id == str(broken):
            raise ConnectionError("the database went away")
        return real_run(job_id, **kwargs)

    monkeypatch.setattr(worker, "run_job_then_woken", run)
    # django-rq reads RQ["EXCEPTION_HANDLERS"] once, when its settings module is imported.
    monkeypatch.setattr(django_rq.settings, "EXCEPTION_HANDLERS", [f"{__name__}.recording_handler"])
    handled.clear()

    get_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")

    assert handled == [(str(broken), "the database went away")]
    assert scheduler.get_job(fine).status == JobStatus.DONE
    # Left where it was for the sweep, which re-sends a pending job nobody claimed.
    assert scheduler.get_job(broken).status == JobStatus.PENDING
    assert leftovers(rq_mode) == NOTHING


def test_a_warm_shutdown_during_a_job_hands_it_back_to_the_queue(rq_mode, monkeypatch):
    """The worker is BUSY while the job runs, so RQ's stop request waits instead of raising into the job."""
    job_id = scheduler.schedule("hello", "stop")
    real_run = worker.run_job_then_woken
    seen: list[str] = []

    def run(job_id, **kwargs):
        rq_worker.request_stop(15, None)  # SIGTERM arriving while the job runs
        seen.append(rq_worker.get_state())
        return real_run(job_id, **kwargs)

    monkeypatch.setattr(worker, "run_job_then_woken", run)
    rq_worker = get_worker()
    rq_worker.work(burst=True, with_scheduler=False, logging_level="WARNING")

    assert seen == ["busy"]
    job = scheduler.get_job(job_id)
    assert job.status == JobStatus.PENDING and not job.lease_owner  # handed back, not left running
    assert {**leftovers(rq_mode), "queued": 0, "job hashes": 0} == NOTHING and get_queue().count == 1

    monkeypatch.setattr(worker, "run_job_then_woken", real_run)
    worker.work(burst=True, with_scheduler=False)  # a new worker process, as the supervisor starts
    assert scheduler.get_job(job_id).status == JobStatus.DONE


def test_redis_failing_as_the_worker_takes_a_message_loses_no_job(rq_mode, monkeypatch):
    """The worker quits (its supervisor starts a new one); the job, never claimed, is sent again by the sweep."""
    import redis.client

    from envoy_django.models import Job

    job_id = scheduler.schedule("hello", "taken")
    real_execute = redis.client.Pipeline.execute
    failed: list[str] = []

    def execute(self, *args, **kwargs):
        if not failed and any(command[0][0] == "LREM" for command in self.command_stack):
            failed.append(job_id)  # the pipeline that takes the message off Redis
            raise redis.exceptions.ConnectionError("Redis went away")
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    get_worker().work(burst=True, with_scheduler=False, logging_level="CRITICAL")

    assert failed == [job_id]
    job = scheduler.get_job(job_id)
    assert (job.status, job.claims, job.steps.count()) == (JobStatus.PENDING, 0, 0)  # nothing ran

    with override_settings(ENVOY={"EXECUTION": "rq", "LEASE_SECONDS": 0.2}):
        deadline = time.monotonic() + 30  # the job was sent LEASE_SECONDS ago once the sweep sends it again
        while scheduler.cleanup_orphaned_jobs()["requeued"] != 1:
            assert time.monotonic() < deadline, "the sweep never sent the job again"
            time.sleep(0.05)
    worker.work(burst=True, with_scheduler=False)  # the new worker process

    job = scheduler.get_job(job_id)
    assert job.status == JobStatus.DONE
    numbers = list(job.steps.values_list("number", flat=True))
    assert len(numbers) == len(set(numbers)) > 0  # it ran once: one Step per transition
    assert not Job.objects.exclude(status=JobStatus.DONE).exists()


def test_an_idle_worker_unsubscribes_promptly_even_when_the_reply_wakes_its_listener_first(rq_mode):
    """The race behind a warm shutdown that hung: the listener handled UNSUBSCRIBE's reply and waited again."""
    import threading

    rq_worker = get_worker()
    rq_worker.subscribe()
    try:
        rq_worker.pubsub.unsubscribe()  # the reply reaches the listener while it still runs
        deadline = time.monotonic() + 30
        while rq_worker.pubsub.subscribed:
            assert time.monotonic() < deadline, "the listener never handled the reply"
            time.sleep(0.01)
        leaving = threading.Thread(target=rq_worker.unsubscribe, daemon=True)
        leaving.start()
        leaving.join(timeout=20)  # RQ's own listener would wait out its 60 s here
        assert not leaving.is_alive() and not rq_worker.pubsub_thread.is_alive()
    finally:
        rq_worker.pubsub.close()
