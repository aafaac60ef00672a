"""register(..., max_active=, concurrency_key=): a job over the limit waits for a slot, and starts when one frees.

The flows (tests/testapp/flows.py) block on the event "go", so a job stays
active until the test resolves it: ``per_customer`` allows two active jobs
per ``input["customer"]``, ``one_at_a_time`` one for the whole flow. Both
execution modes: in "rq" the test works the queue in-process after each call.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone

from envoy_django import StateFlow, register, scheduler
from envoy_django.exceptions import FlowDefinitionError, InvalidArgumentError
from envoy_django.models import Job
from envoy_django.registry import get_flow, unregister
from envoy_django.scheduler.executor import run_job
from envoy_django.testing.worker import drain
from tests.support import in_threads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["immediate", "rq"])
def settle(request):
    """Run what the last call made runnable (rq mode); immediate mode's calls did it themselves."""
    if request.param == "rq":
        request.getfixturevalue("redis_conn")
    with override_settings(ENVOY={"EXECUTION": request.param, "RETRY_BACKOFF": 0, "RETRY_BACKOFF_MAX": 0}):
        yield drain if request.param == "rq" else (lambda: None)


def statuses(ids):
    rows = dict(Job.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [rows[Job._meta.pk.to_python(job_id)] for job_id in ids]


def go(job_id, settle, value="ok"):
    scheduler.resolve_blocking_job(job_id, "go", value)
    settle()


def test_a_job_over_its_keys_limit_waits_for_a_slot_and_says_so(settle):
    a = [scheduler.schedule("per_customer", {"customer": "acme"}) for _ in range(3)]
    b = scheduler.schedule("per_customer", {"customer": "globex"})
    settle()

    assert statuses([*a, b]) == ["blocking", "blocking", "pending", "blocking"]
    waiting = Job.objects.get(pk=a[2])
    assert waiting.slot == "waiting" and waiting.started_at is None
    assert waiting.pending_reason == "waiting for a slot: per_customer acme (max_active 2)"
    assert waiting.concurrency_key == "acme"


def test_an_end_starts_the_oldest_waiting_job_of_its_key(settle):
    a = [scheduler.schedule("per_customer", {"customer": "acme"}) for _ in range(4)]
    settle()
    assert statuses(a) == ["blocking", "blocking", "pending", "pending"]

    go(a[1], settle)

    assert statuses(a) == ["blocking", "done", "blocking", "pending"]
    started = Job.objects.get(pk=a[2])
    assert started.slot == "held" and started.pending_reason == ""
    for job_id in (a[0], a[2]):
        go(job_id, settle)
    go(a[3], settle)
    assert statuses(a) == ["done"] * 4
    assert {job.slot for job in Job.objects.filter(pk__in=a)} == {""}


def test_a_flow_limited_as_a_whole(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(3)]
    settle()
    assert statuses(ids) == ["blocking", "pending", "pending"]
    assert Job.objects.get(pk=ids[1]).pending_reason == "waiting for a slot: one_at_a_time (max_active 1)"
    for index, job_id in enumerate(ids):
        go(job_id, settle)
        assert statuses(ids)[: index + 2] == ["done"] * (index + 1) + (["blocking"] if index < 2 else [])


def test_cancelling_or_failing_an_active_job_frees_its_slot(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(3)]
    settle()
    scheduler.cancel_job(ids[0])
    settle()
    assert statuses(ids) == ["cancelled", "blocking", "pending"]
    scheduler.fail_job(ids[1], "operator gave up")
    settle()
    assert statuses(ids) == ["cancelled", "failed", "blocking"]


def test_cancelling_a_waiting_job_frees_nothing_and_it_never_starts(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(3)]
    settle()
    scheduler.cancel_job(ids[1])
    settle()
    assert statuses(ids) == ["blocking", "cancelled", "pending"]
    go(ids[0], settle)
    assert statuses(ids) == ["done", "cancelled", "blocking"]
    assert Job.objects.get(pk=ids[1]).started_at is None


def test_a_job_keeps_its_slot_while_it_retries_and_after_it_resumes(settle):
    first = scheduler.schedule("one_at_a_time")
    second = scheduler.schedule("one_at_a_time")
    settle()
    # Resumed (pending again, then running): still the one active job, not a newcomer.
    assert Job.objects.get(pk=first).slot == "held"
    go(first, settle, "done")
    assert statuses([first, second]) == ["done", "blocking"]


def test_a_retried_failed_job_takes_a_slot_again(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(2)]
    settle()
    scheduler.fail_job(ids[0], "operator")
    settle()
    assert statuses(ids) == ["failed", "blocking"]
    retried_at = timezone.now()
    scheduler.retry_job(ids[0])
    settle()
    # The slot is the second job's now: the retried one waits for it.
    assert statuses(ids) == ["pending", "blocking"]
    assert Job.objects.get(pk=ids[0]).slot == "waiting"
    go(ids[1], settle)
    # It runs on from its checkpoint (its wait was cancelled when it failed), once the slot was free.
    assert statuses(ids) == ["done", "done"]
    since_retry = Job.objects.get(pk=ids[0]).steps.filter(started_at__gte=retried_at)
    assert since_retry.exists()
    assert all(step.started_at >= Job.objects.get(pk=ids[1]).finished_at for step in since_retry)


def test_a_child_of_a_limited_flow_waits_for_a_slot_too(settle):
    holder = scheduler.schedule("one_at_a_time")
    settle()
    register("spawns_limited", StateFlow([{"name": "Spawn", "on_state": _spawn_limited}]))
    try:
        parent = scheduler.schedule("spawns_limited")
        settle()
        child = Job.objects.get(parent_id=parent)
        assert child.status == "pending" and child.slot == "waiting"
        go(holder, settle)
        assert Job.objects.get(pk=child.pk).status == "blocking"
        go(child.pk, settle)
        assert statuses([parent]) == ["done"]
    finally:
        unregister("spawns_limited")


def _spawn_limited(ctx):
    ctx.spawn("one_at_a_time")
    return ctx


# --- bad input ---------------------------------------------------------------------


def test_an_input_without_the_key_is_an_error_naming_flow_and_path_and_creates_nothing(settle):
    for bad in (None, {"client": "acme"}, {"customer": None}, {"customer": {"id": 1}}):
        with pytest.raises(InvalidArgumentError, match=r"concurrency_key of flow 'per_customer'"):
            scheduler.schedule("per_customer", bad)
    with pytest.raises(InvalidArgumentError, match=r"schedule_many item 1: concurrency_key of flow 'per_customer'"):
        scheduler.schedule_many([("per_customer", {"customer": "a"}), ("per_customer", {})])
    assert not Job.objects.exists()


def test_numbers_are_keys_too(settle):
    ids = [scheduler.schedule("per_customer", {"customer": 42}) for _ in range(3)]
    settle()
    assert statuses(ids) == ["blocking", "blocking", "pending"]
    assert Job.objects.get(pk=ids[2]).concurrency_key == "42"


@pytest.mark.parametrize("kwargs, message", [
    ({"max_active": 0}, "max_active must be a whole number of at least 1"),
    ({"max_active": True}, "max_active must be a whole number"),
    ({"max_active": "3"}, "max_active must be a whole number"),
    ({"concurrency_key": "customer"}, "concurrency_key needs max_active"),
    ({"max_active": 2, "concurrency_key": "customer..id"}, "concurrency_key must be a dotted path"),
    ({"max_active": 2, "concurrency_key": 7}, "concurrency_key must be a dotted path"),
])
def test_register_refuses_a_limit_that_cannot_work(kwargs, message):
    with pytest.raises(FlowDefinitionError, match=message):
        register("bad_limit", get_flow("hello"), **kwargs)
    with pytest.raises(Exception, match="no flow is registered"):
        get_flow("bad_limit")


def test_a_callable_key(settle):
    register("by_callable", get_flow("one_at_a_time"), max_active=1, concurrency_key=lambda i: i["who"].lower())
    try:
        ids = [scheduler.schedule("by_callable", {"who": who}) for who in ("Ann", "ANN", "Bob")]
        settle()
        assert statuses(ids) == ["blocking", "pending", "blocking"]
        with pytest.raises(InvalidArgumentError, match=r"concurrency_key of flow 'by_callable' raised KeyError"):
            scheduler.schedule("by_callable", {})
    finally:
        unregister("by_callable")


# --- races, the sweep's net, failures after the commit ------------------------------------


@pytest.mark.services  # transactions at once: PostgreSQL's
@pytest.mark.usefixtures("redis_conn")
def test_claims_racing_for_one_key_never_exceed_the_limit():
    with override_settings(ENVOY={"EXECUTION": "rq"}):
        ids = [scheduler.schedule("per_customer", {"customer": "acme"}) for _ in range(8)]
        in_threads(*[lambda job_id=job_id: run_job(job_id) for job_id in ids])
        assert sorted(statuses(ids)) == ["blocking"] * 2 + ["pending"] * 6
        assert Job.objects.filter(pk__in=ids, slot="waiting").count() == 6


@pytest.mark.services
@pytest.mark.usefixtures("redis_conn")
def test_two_ends_racing_wake_one_waiter_each():
    with override_settings(ENVOY={"EXECUTION": "rq"}):
        ids = [scheduler.schedule("per_customer", {"customer": "acme"}) for _ in range(4)]
        drain()
        in_threads(*[lambda job_id=job_id: scheduler.resolve_blocking_job(job_id, "go", 1) for job_id in ids[:2]])
        drain()
        assert statuses(ids) == ["done", "done", "blocking", "blocking"]


def test_the_sweep_wakes_waiters_when_a_deploy_raises_the_limit(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(3)]
    settle()
    flow = get_flow("one_at_a_time")
    try:
        register("one_at_a_time", flow, replace=True, max_active=2)
        counts = scheduler.cleanup_orphaned_jobs()
        settle()
        assert counts["woken"] == 1
        assert statuses(ids) == ["blocking", "blocking", "pending"]
        register("one_at_a_time", flow, replace=True)  # no limit at all: every waiter goes
        assert scheduler.cleanup_orphaned_jobs()["woken"] == 1
        settle()
        assert statuses(ids) == ["blocking"] * 3
    finally:
        register("one_at_a_time", flow, replace=True, max_active=1)


def test_the_sweep_wakes_a_waiter_whose_wake_was_missed(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(2)]
    settle()
    # As if the end's wake had skipped the waiter (its row held at that instant): the slot is
    # free and nobody was told.
    with mock.patch("envoy_django.scheduler.transitions._free_slots"):
        go(ids[0], settle)
    assert statuses(ids) == ["done", "pending"]
    assert scheduler.cleanup_orphaned_jobs()["woken"] == 1
    settle()
    assert statuses(ids) == ["done", "blocking"]


@pytest.mark.usefixtures("redis_conn")
def test_a_woken_job_whose_enqueue_failed_is_sent_again_by_the_sweep(caplog):
    with override_settings(ENVOY={"EXECUTION": "rq", "LEASE_SECONDS": 30}):
        ids = [scheduler.schedule("one_at_a_time") for _ in range(2)]
        drain()
        scheduler.resolve_blocking_job(ids[0], "go", 1)
        with mock.patch("envoy_django.dispatch.rq_queue.RQDispatcher.enqueue", side_effect=ConnectionError("down")):
            drain()  # the first job ends and wakes the second; its message never goes out
        assert statuses(ids) == ["done", "pending"]
        woken = Job.objects.get(pk=ids[1])
        assert woken.status == "pending" and woken.slot == ""
        assert "could not hand" in caplog.text
        later = timezone.now() + dt.timedelta(seconds=31)
        with mock.patch("django.utils.timezone.now", return_value=later):
            counts = scheduler.cleanup_orphaned_jobs()
        assert counts["requeued"] == 1
        drain()
        assert statuses(ids) == ["done", "blocking"]


def test_waiting_jobs_are_not_resent_by_the_sweep(settle):
    ids = [scheduler.schedule("one_at_a_time") for _ in range(3)]
    settle()
    later = timezone.now() + dt.timedelta(minutes=10)
    with mock.patch("django.utils.timezone.now", return_value=later):
        counts = scheduler.cleanup_orphaned_jobs()
    settle()
    assert counts["requeued"] == 0 and counts["woken"] == 0
    assert statuses(ids) == ["blocking", "pending", "pending"]
