"""schedule_many(): many jobs in one transaction, under schedule()'s rules, sent in one pipelined enqueue."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from envoy_django import scheduler, signals
from envoy_django.exceptions import (
    IdempotencyConflictError,
    InvalidArgumentError,
    PayloadError,
    UnknownFlowError,
)
from envoy_django.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

RQ_MODE = {"EXECUTION": "rq"}


def test_every_job_runs_and_the_ids_come_back_in_order():
    ids = scheduler.schedule_many([("hello", "one"), ("hello", "two"), ("child", 21)])
    assert [scheduler.get_job(job_id).output for job_id in ids] == ["Hello one! Bye!", "Hello two! Bye!", 42]


def test_an_empty_batch_creates_nothing():
    assert scheduler.schedule_many([]) == []
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("items", "error", "names"),
    [
        ([("hello", 1), ("no_such_flow", 2)], UnknownFlowError, "schedule_many item 1: no flow is registered"),
        ([("hello", 1), ("hello", {"bad": object()})], PayloadError, "schedule_many item 1: input of flow 'hello'"),
        ([("hello",)], InvalidArgumentError, "schedule_many item 0 must be (name, input)"),
        (["hello"], InvalidArgumentError, "schedule_many item 0 must be (name, input)"),
        ([("hello", 1, {"priority": 3})], InvalidArgumentError, "schedule_many item 0: options may hold"),
        ([("hello", 1, {"run_at": dt.datetime(2030, 1, 1)})], InvalidArgumentError,
         "schedule_many item 0: run_at for flow 'hello' must be a timezone-aware datetime"),
        ([("hello", 1, {"idempotency_key": "k" * 1000})], InvalidArgumentError,
         "schedule_many item 0: idempotency_key for flow 'hello'"),
    ],
)
def test_one_bad_item_is_named_and_no_job_is_created(items, error, names, unchanged):
    with unchanged(), pytest.raises(error) as raised:
        scheduler.schedule_many(items)
    assert names in str(raised.value)


def test_idempotency_keys_follow_schedules_rules_within_and_across_batches():
    first = scheduler.schedule("hello", "a", idempotency_key="order-1")
    ids = scheduler.schedule_many([
        ("hello", "a", {"idempotency_key": "order-1"}),  # taken before: that job
        ("hello", "b", {"idempotency_key": "order-2"}),  # new
        ("hello", "b", {"idempotency_key": "order-2"}),  # repeated in the batch: the same new job
        ("hello", "c"),
    ])
    assert ids[0] == first and ids[1] == ids[2] and len(set(ids)) == 3
    assert Job.objects.count() == 3
    assert scheduler.schedule_many([("hello", "b", {"idempotency_key": "order-2"})]) == [ids[1]]


def test_a_key_with_other_input_conflicts_and_creates_nothing(unchanged):
    held = scheduler.schedule("hello", "a", idempotency_key="order-1")
    with unchanged(), pytest.raises(IdempotencyConflictError) as raised:
        scheduler.schedule_many([("hello", "new"), ("hello", "other", {"idempotency_key": "order-1"})])
    assert raised.value.job_id == held and "other input" in str(raised.value)
    with unchanged(), pytest.raises(IdempotencyConflictError, match="earlier item of this batch of flow 'hello'"):
        scheduler.schedule_many([("hello", "x", {"idempotency_key": "k"}), ("child", 1, {"idempotency_key": "k"})])


def test_a_batch_inside_a_rolled_back_transaction_leaves_nothing_and_tells_no_one():
    told = []
    receiver = lambda sender, job, **kwargs: told.append(job.pk)  # noqa: E731
    signals.job_scheduled.connect(receiver)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            scheduler.schedule_many([("hello", 1), ("hello", 2)])
            raise RuntimeError
    finally:
        signals.job_scheduled.disconnect(receiver)
    assert told == [] and not Job.objects.exists()


@pytest.mark.services
def test_the_batch_reaches_redis_in_one_pipeline_and_delayed_jobs_wait(redis_conn, monkeypatch):
    from envoy_django.dispatch.rq_queue import get_queue
    from envoy_django.testing.worker import drain

    with override_settings(ENVOY=RQ_MODE):
        queue = get_queue()
        pipelines = []
        original = type(queue.connection).pipeline

        def counting(self, *args, **kwargs):
            pipelines.append(1)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(type(queue.connection), "pipeline", counting)
        later = timezone.now() + dt.timedelta(hours=1)
        ids = scheduler.schedule_many([("hello", i) for i in range(50)] + [("hello", "later", {"run_at": later})])
        monkeypatch.undo()
        assert len(pipelines) <= 3  # the 50 due jobs share one; the delayed one is RQ's scheduled registry
        assert queue.count == 50
        assert queue.scheduled_job_registry.count == 1
        drain()
    jobs = {job.pk: job for job in Job.objects.filter(pk__in=ids)}
    assert sorted(str(pk) for pk, job in jobs.items() if job.status == "done") == sorted(ids[:50])
    assert jobs[Job._meta.pk.to_python(ids[50])].status == "pending"


@pytest.mark.services
def test_redis_down_after_the_commit_leaves_the_batch_to_the_sweep(redis_conn, monkeypatch, caplog):
    from redis.exceptions import ConnectionError

    from envoy_django.dispatch import rq_queue

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    with override_settings(ENVOY=RQ_MODE):
        monkeypatch.setattr(rq_queue, "get_queue", down)
        ids = scheduler.schedule_many([("hello", 1), ("hello", 2)])
    assert {job.status for job in Job.objects.filter(pk__in=ids)} == {"pending"}
    assert all(job.enqueued_at for job in Job.objects.filter(pk__in=ids))  # the sweep's clock starts here
    assert "could not hand 2 job(s) to a worker" in caplog.text


@pytest.mark.services  # two transactions at once: PostgreSQL's
def test_two_callers_racing_for_the_same_keys_get_the_same_jobs():
    from tests.support import in_threads

    items = [("hello", i, {"idempotency_key": f"race-{i}"}) for i in range(20)]
    first, second, single = in_threads(
        lambda: scheduler.schedule_many(items), lambda: scheduler.schedule_many(items[::-1]),
        lambda: scheduler.schedule("hello", 7, idempotency_key="race-7"),
    )
    assert first == second[::-1] and single == first[7]
    assert Job.objects.count() == 20


@pytest.mark.services
def test_jobs_whose_enqueue_never_happened_are_sent_by_the_sweep(redis_conn, monkeypatch):
    """Redis down, or the process killed between the commit and the enqueue: the rows say what to send."""
    from envoy_django.dispatch import rq_queue

    def down(*args, **kwargs):
        raise ConnectionError("the process died before it reached Redis")

    with override_settings(ENVOY=RQ_MODE):
        with monkeypatch.context() as patched:
            patched.setattr(rq_queue, "get_queue", down)
            ids = scheduler.schedule_many([("hello", 1), ("hello", 2)])
        Job.objects.filter(pk__in=ids).update(enqueued_at=timezone.now() - dt.timedelta(minutes=5))
        assert scheduler.cleanup_orphaned_jobs()["requeued"] == 2
        assert rq_queue.get_queue().count == 2


def test_a_batch_stores_each_row_exactly_as_schedule_does(redis_conn):
    """On PostgreSQL the batch is one INSERT of column arrays: every column must come out as the ORM writes it."""
    from django.forms.models import model_to_dict

    at = timezone.now() + dt.timedelta(hours=1)
    with override_settings(ENVOY={"EXECUTION": "rq"}):
        one = scheduler.schedule("per_customer", {"customer": "acme", "n": [1, 2.5, None, "é"]},
                                 run_at=at, idempotency_key="single")
        many = scheduler.schedule_many([
            ("per_customer", {"customer": "acme", "n": [1, 2.5, None, "é"]},
             {"run_at": at, "idempotency_key": "batch"}),
            ("hello", None),
            ("hello", "x"),
        ])
    moments = {"id", "created_at", "updated_at", "enqueued_at", "idempotency_key"}

    def row(job_id):
        return {k: v for k, v in model_to_dict(Job.objects.get(pk=job_id)).items() if k not in moments}

    assert row(many[0]) == row(one)
    hello, hello_x = (Job.objects.get(pk=job_id) for job_id in many[1:])
    assert (hello.input, hello_x.input, hello.idempotency_key, hello.run_after) == (None, "x", None, None)
    assert hello.context == {} and hello.status == "pending" and hello.created_at == hello_x.created_at
