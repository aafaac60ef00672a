"""After-commit work can neither fail the caller nor stop the rest.

The work is committed when the transaction commits, so the call returns:
a receiver that raises is logged with its name, and an enqueue that fails
(Redis down) is logged and left to the sweep. Before, a raising receiver
stopped Django's remaining on-commit callbacks: the enqueue after it never
ran, the caller got the receiver's exception for committed work, and the
job never moved.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.db import transaction
from django.test import override_settings

from envoy_django import scheduler, signals
from envoy_django.dispatch.rq_queue import get_queue
from envoy_django.models import Escalation, Job
from envoy_django.testing.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

NO_REDIS = {"envoy": {"URL": "redis://127.0.0.1:1/0"}}  # nothing listens on port 1


class Paging(RuntimeError):
    pass


def page_someone(sender, job, **kwargs):
    raise Paging(f"pager unreachable for job {job.pk}")


@pytest.fixture(params=["immediate", "rq"])
def mode(request):
    if request.param == "rq":
        request.getfixturevalue("redis_conn")
    with override_settings(ENVOY={"EXECUTION": request.param, "RETRY_BACKOFF": 0, "RETRY_BACKOFF_MAX": 0}):
        yield request.param


@pytest.fixture
def raising(request):
    """``raising(signals.job_scheduled)``: connect a receiver that raises, for the test's length."""
    connected = []

    def connect(signal):
        signal.connect(page_someone)
        connected.append(signal)

    yield connect
    for signal in connected:
        signal.disconnect(page_someone)


def settle(mode):
    if mode == "rq":
        drain()


def test_a_raising_job_scheduled_receiver_neither_fails_schedule_nor_strands_the_job(mode, raising, caplog):
    raising(signals.job_scheduled)
    with caplog.at_level(logging.ERROR, logger="envoy_django.aftercommit"):
        job_id = scheduler.schedule("hello", "pager")  # returns: the job is committed
    settle(mode)
    assert scheduler.get_job(job_id).status == "done"
    logged = [r.getMessage() for r in caplog.records if r.name == "envoy_django.aftercommit"]
    assert any(
        f"signal job_scheduled for job {job_id}: receiver {__name__}.page_someone raised Paging" in m for m in logged
    ), logged


def test_a_raising_escalation_replied_receiver_neither_fails_the_reply_nor_strands_the_job(mode, raising):
    job_id = scheduler.schedule("family", {"children": [1]})
    settle(mode)
    scheduler.resolve_blocking_job(job_id, "payment", 1)
    settle(mode)
    escalation = Escalation.objects.get(job_id=job_id)
    raising(signals.escalation_replied)
    raising(signals.job_resumed)
    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "ok": True}, "approved", user="alice")
    settle(mode)
    assert scheduler.get_job(job_id).status == "done"


def test_every_receiver_runs_even_when_one_before_it_raises(raising):
    heard = []
    raising(signals.job_done)
    receiver = lambda sender, job, **kwargs: heard.append(job.pk)  # noqa: E731
    signals.job_done.connect(receiver)
    try:
        job_id = scheduler.schedule("hello")
    finally:
        signals.job_done.disconnect(receiver)
    assert [str(pk) for pk in heard] == [job_id]


def test_the_admin_reply_with_a_raising_receiver_redirects_and_the_job_resumes(raising, admin_client):
    job_id = scheduler.schedule("family", {"children": [1]})
    scheduler.resolve_blocking_job(job_id, "payment", 1)
    escalation = Escalation.objects.get(job_id=job_id)
    raising(signals.escalation_replied)
    response = admin_client.post(
        f"/admin/envoy_django/escalation/{escalation.pk}/reply/",
        {"input-reason": "a", "input-ok": "on", "decision": "approved"},
    )
    assert response.status_code == 302
    assert scheduler.get_job(job_id).status == "done"


def test_the_enqueue_goes_out_before_any_receiver_runs(redis_conn):
    queued_when_told = []

    def receiver(sender, job, **kwargs):
        queued_when_told.append(get_queue().count)

    signals.job_scheduled.connect(receiver)
    try:
        with override_settings(ENVOY={"EXECUTION": "rq"}):
            scheduler.schedule("hello")
    finally:
        signals.job_scheduled.disconnect(receiver)
    assert queued_when_told == [1]


def test_schedule_with_redis_unreachable_returns_the_job_and_the_sweep_sends_it_later(redis_conn, caplog):
    with override_settings(ENVOY={"EXECUTION": "rq", "LEASE_SECONDS": 30}):
        with override_settings(RQ_QUEUES=NO_REDIS), caplog.at_level(logging.WARNING, "envoy_django.aftercommit"):
            job_id = scheduler.schedule("hello", "later", idempotency_key="order-7")
            # A caller that retries gets the same job, not a duplicate.
            assert scheduler.schedule("hello", "later", idempotency_key="order-7") == job_id
        assert "could not hand 1 job(s) to a worker" in caplog.text and job_id in caplog.text
        assert Job.objects.get().status == "pending"
        assert get_queue().count == 0

        assert scheduler.cleanup_orphaned_jobs()["requeued"] == 0  # sent moments ago: not overdue yet
        Job.objects.filter(pk=job_id).update(enqueued_at=Job.objects.get().enqueued_at - dt.timedelta(seconds=31))
        assert scheduler.cleanup_orphaned_jobs()["requeued"] == 1  # Redis is back; nobody claimed it
        drain()
    assert scheduler.get_job(job_id).output == "Hello later! Bye!"


def test_a_failed_enqueue_does_not_stop_the_signals(redis_conn):
    heard = []
    receiver = lambda sender, job, **kwargs: heard.append(str(job.pk))  # noqa: E731
    signals.job_scheduled.connect(receiver)
    try:
        with override_settings(ENVOY={"EXECUTION": "rq"}, RQ_QUEUES=NO_REDIS):
            job_id = scheduler.schedule("hello")
    finally:
        signals.job_scheduled.disconnect(receiver)
    assert heard == [job_id]


def test_a_savepoint_that_rolls_back_takes_its_enqueues_and_signals_with_it(redis_conn):
    heard = []
    receiver = lambda sender, job, **kwargs: heard.append(job.input)  # noqa: E731
    signals.job_scheduled.connect(receiver)
    try:
        with override_settings(ENVOY={"EXECUTION": "rq"}), transaction.atomic():
            scheduler.schedule("hello", "kept")
            with pytest.raises(RuntimeError), transaction.atomic():
                scheduler.schedule("hello", "rolled back")
                raise RuntimeError
    finally:
        signals.job_scheduled.disconnect(receiver)
    assert heard == ["kept"]
    assert get_queue().count == 1
    assert list(Job.objects.values_list("input", flat=True)) == ["kept"]
