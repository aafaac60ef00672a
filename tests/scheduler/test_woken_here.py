"""A worker that ends a parent's last child runs the parent next itself, without a message.

What a user relies on: the parent resumes at once and exactly once, and it
is never left pending with nobody to run it, whether the worker goes on,
is asked to stop, cannot reach Redis, or (tests/workers/test_recovery.py)
dies in between.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.dispatch.rq_queue import RQDispatcher, get_queue
from envoy_django.models import Job, JobStatus, Wait
from envoy_django.scheduler.executor import run_job, run_job_then_woken
from envoy_django.testing.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

RQ_MODE = {"EXECUTION": "rq", "RETRY_BACKOFF": 0.0, "RETRY_BACKOFF_MAX": 0.0}


@pytest.fixture
def sent(redis_conn: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every job id handed to RQ, in rq mode."""
    ids: list[str] = []
    enqueue = RQDispatcher.enqueue

    def recording(self: RQDispatcher, jobs: Any) -> None:
        ids.extend(job_id for job_id, _, _ in jobs)
        enqueue(self, jobs)

    monkeypatch.setattr(RQDispatcher, "enqueue", recording)
    with override_settings(ENVOY=RQ_MODE):
        yield ids


def queued(job_id: Any, queue: str | None = None) -> int:
    """Messages for the job waiting in the Envoy queue (or ``queue``)."""
    return sum(message.startswith(f"envoy-{job_id}-") for message in get_queue(queue).job_ids)


def once_ended(job: Job) -> Any:
    """A ``should_stop`` that turns true once ``job`` has ended: a worker asked to stop right after it."""
    return lambda: Job.objects.get(pk=job.pk).is_finished


def chain(top: str) -> list[Job]:
    """The jobs of a ``nested`` chain, top first."""
    jobs = [Job.objects.get(pk=top)]
    while below := Job.objects.filter(parent_id=jobs[-1].pk).first():
        jobs.append(below)
    return jobs


def test_the_worker_that_ends_the_last_child_runs_the_parent_and_its_parent(sent: list[str]) -> None:
    top = scheduler.schedule("nested", 2)
    drain()
    jobs = chain(top)
    assert [(job.status, job.output) for job in jobs] == [("done", 2), ("done", 1), ("done", 0)]
    # One message per job's first run; the two resumes went to the worker that ended the child.
    assert sorted(sent) == sorted(str(job.pk) for job in jobs)
    assert get_queue().count == 0


def test_of_two_children_the_one_that_ends_last_runs_the_parent(sent: list[str]) -> None:
    parent = scheduler.schedule("family", {"children": [1, 2]})
    drain()
    waits = dict(Wait.objects.filter(job_id=parent).values_list("wait_id", "status"))
    assert list(waits.values()).count("done") == 2 and waits["payment"] == "pending"
    # Resumed once, by the last child's end, in that worker: it moved on to wait for its payment event.
    assert Job.objects.get(pk=parent).status == JobStatus.BLOCKING
    assert sent.count(parent) == 1


def test_a_worker_asked_to_stop_after_the_child_enqueues_the_parent_instead(sent: list[str]) -> None:
    top = scheduler.schedule("nested", 1)
    run_job(top)  # the parent's first run: it spawns the child and blocks
    before = queued(top)  # schedule()'s message, left unread
    child = Job.objects.get(parent_id=top)
    run_job_then_woken(str(child.pk), should_stop=once_ended(child))
    assert Job.objects.get(pk=top).status == JobStatus.PENDING
    assert sent.count(top) == 2 and queued(top) == before + 1
    drain()
    assert Job.objects.get(pk=top).output == 1


def test_redis_down_when_a_stopping_worker_enqueues_the_parent_leaves_it_to_the_sweep(
        sent: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import datetime as dt

    from django.utils import timezone

    from envoy_django.sweeper import sweep_once

    top = scheduler.schedule("nested", 1)
    run_job(top)
    before = queued(top)
    child = Job.objects.get(parent_id=top)
    working = RQDispatcher.enqueue

    def down(self: RQDispatcher, jobs: Any) -> None:
        if any(job_id == top for job_id, _, _ in jobs):
            raise ConnectionError("Redis is down")
        working(self, jobs)

    monkeypatch.setattr(RQDispatcher, "enqueue", down)
    with caplog.at_level(logging.WARNING, logger="envoy_django.aftercommit"):
        run_job_then_woken(str(child.pk), should_stop=once_ended(child))
    assert f"the sweep sends them again: {top}" in caplog.text
    parent = Job.objects.get(pk=top)
    assert (parent.status, queued(top)) == (JobStatus.PENDING, before)

    monkeypatch.setattr(RQDispatcher, "enqueue", working)
    Job.objects.filter(pk=top).update(enqueued_at=timezone.now() - dt.timedelta(hours=1))  # past the bound
    sweep_once()
    drain()
    assert Job.objects.get(pk=top).output == 1


def test_a_parent_resumed_outside_a_worker_run_is_enqueued_as_ever(sent: list[str]) -> None:
    """A child cancelled by an operator resumes its parent through the queue: nobody here runs it next."""
    top = scheduler.schedule("nested", 1)
    run_job(top)
    before = queued(top)
    child = Job.objects.get(parent_id=top)
    scheduler.cancel_job(child.pk)
    assert Job.objects.get(pk=top).status == JobStatus.PENDING
    assert queued(top) == before + 1
    drain()
    assert Job.objects.get(pk=top).output == "cancelled"


@pytest.fixture
def parent_of_child() -> Any:
    """Registers ``name`` (``queue=`` as given): it spawns a ``child`` and outputs the child's output + 1."""
    from envoy_django import StateFlow, register
    from envoy_django.registry import unregister
    from tests.testapp.flows import _nest_count

    def spawn(ctx: Any) -> Any:
        ctx.set("below", ctx.spawn("child", ctx.input()))
        return ctx

    names = []

    def make(name: str, **options: Any) -> None:
        register(name, StateFlow([{"name": "Spawn", "on_state": spawn, "on_exit": _nest_count}]), **options)
        names.append(name)

    yield make
    for name in names:
        unregister(name)


def test_a_parent_routed_to_another_queue_goes_there(sent: list[str], parent_of_child: Any) -> None:
    """Its workers are the ones the site chose for it: the worker that ran the child leaves it to them."""
    parent_of_child("routed_parent", queue="envoy-priority")
    top = scheduler.schedule("routed_parent", 20)
    run_job(top)
    child = Job.objects.get(parent_id=top)
    run_job_then_woken(str(child.pk))
    assert Job.objects.get(pk=top).status == JobStatus.PENDING
    assert queued(top, "envoy-priority") == 2
    drain(queue_names=["envoy-priority"])
    assert Job.objects.get(pk=top).output == 41


def test_a_parent_whose_version_this_process_lacks_gets_a_message(sent: list[str], parent_of_child: Any) -> None:
    """A process without its code would only leave it pending: a process that has it takes the message."""
    from envoy_django.registry import unregister

    parent_of_child("retiring_parent")
    top = scheduler.schedule("retiring_parent", 20)
    run_job(top)
    before = queued(top)
    child = Job.objects.get(parent_id=top)
    unregister("retiring_parent")  # this process no longer has the parent's code
    run_job_then_woken(str(child.pk))
    parent = Job.objects.get(pk=top)
    assert (parent.status, parent.pending_reason, queued(top)) == (JobStatus.PENDING, "", before + 1)
