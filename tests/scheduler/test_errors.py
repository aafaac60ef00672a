"""Bad input: a clear error naming what is wrong, and no row changed."""

import datetime as dt
import math
import uuid

import pytest
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.exceptions import (
    EscalationAlreadyRepliedError,
    EscalationError,
    EscalationNotFoundError,
    JobNotFoundError,
    JobStateError,
    PayloadError,
    PayloadTooLargeError,
    UnknownFlowError,
    WaitNotFoundError,
)
from envoy_django.models import Escalation, Job
from tests.support import run_in_one_state

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def blocked_family():
    job_id = scheduler.schedule("family", {"children": [1]})
    scheduler.resolve_blocking_job(job_id, "payment", 1)
    return job_id, Escalation.objects.get(job_id=job_id)


def test_unknown_flow(unchanged):
    with unchanged(), pytest.raises(UnknownFlowError, match="'nope'"):
        scheduler.schedule("nope", {})


@pytest.mark.parametrize("value, where", [
    (dt.datetime(2026, 1, 1), "datetime"),
    ({"tags": {1, 2}}, "tags"),
    ({"x": math.nan}, "x"),
])
def test_input_that_is_not_json(unchanged, value, where):
    with unchanged(), pytest.raises(PayloadError, match=where):
        scheduler.schedule("hello", value)


def test_oversized_input(unchanged):
    with override_settings(ENVOY={"MAX_PAYLOAD_BYTES": 100}), unchanged():
        with pytest.raises(PayloadTooLargeError, match="input of flow 'hello'"):
            scheduler.schedule("hello", "x" * 200)


def test_unknown_job_and_wait(unchanged):
    job_id = scheduler.schedule("family", {"children": [1]})
    with unchanged():
        with pytest.raises(JobNotFoundError):
            scheduler.resolve_blocking_job(uuid.uuid4(), "payment", 1)
        with pytest.raises(JobNotFoundError, match="not a valid id"):
            scheduler.get_job("garbage")
        with pytest.raises(WaitNotFoundError, match="'nope'"):
            scheduler.resolve_blocking_job(job_id, "nope", 1)


def test_wait_already_resolved(unchanged, blocked_family):
    job_id, _ = blocked_family
    with unchanged(), pytest.raises(JobStateError, match="'payment'.*already resolved"):
        scheduler.resolve_blocking_job(job_id, "payment", 2)


def test_escalation_wait_cannot_be_resolved_as_an_event(unchanged, blocked_family):
    job_id, escalation = blocked_family
    with unchanged(), pytest.raises(JobStateError, match="reply_to_escalation"):
        scheduler.resolve_blocking_job(job_id, escalation.wait_id, {})


@pytest.mark.parametrize("values, status, message", [
    ({"nope": 1, "reason": "a"}, "approved", "unknown input 'nope'"),
    ({"reason": "z"}, "approved", "'z' is not an option of input 'reason'"),
    ({"note": "no reason"}, "approved", "input 'reason' .* is required"),
    ({"reason": "a", "ok": "yes"}, "approved", "input 'ok' takes true or false"),
    ({"reason": "a", "note": 5}, "approved", "input 'note' takes text"),
    ({"reason": "a"}, "maybe", "status must be 'approved' or 'rejected'"),
    ("a", "approved", "values must be a dict"),
])
def test_invalid_replies(unchanged, blocked_family, values, status, message):
    _, escalation = blocked_family
    with unchanged(), pytest.raises(EscalationError, match=message):
        scheduler.reply_to_escalation(escalation.pk, values, status)


def test_second_reply_names_the_current_status(unchanged, blocked_family):
    _, escalation = blocked_family
    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "ok": True}, "approved", user="alice")
    with unchanged(), pytest.raises(EscalationAlreadyRepliedError, match="already approved by alice"):
        scheduler.reply_to_escalation(escalation.pk, {"reason": "b"}, "rejected", user="bob")


def test_reply_to_cancelled_escalation(unchanged, blocked_family):
    job_id, escalation = blocked_family
    scheduler.cancel_job(job_id)
    with unchanged(), pytest.raises(EscalationAlreadyRepliedError, match="already cancelled"):
        scheduler.reply_to_escalation(escalation.pk, {"reason": "a"}, "approved")


def test_unknown_escalation(unchanged):
    with unchanged(), pytest.raises(EscalationNotFoundError):
        scheduler.reply_to_escalation(uuid.uuid4(), {}, "approved")


def test_cancel_or_fail_a_finished_job(unchanged):
    job_id = scheduler.schedule("hello")
    with unchanged():
        with pytest.raises(JobStateError, match="already done; nothing to cancel"):
            scheduler.cancel_job(job_id)
        with pytest.raises(JobStateError, match="already done; nothing to fail"):
            scheduler.fail_job(job_id, "late")


def test_handler_returning_none_fails_without_retry():
    job = scheduler.get_job(scheduler.schedule("bad_return"))
    assert job.status == "failed"
    assert "on_state of state 'Broken' returned NoneType" in job.error
    assert job.steps.count() == 1


def test_spawning_an_unknown_flow_fails_the_parent_and_creates_no_child():
    job = scheduler.get_job(scheduler.schedule("spawn_missing"))
    assert job.status == "failed"
    assert "'no_such_flow'" in job.error and "'Spawner'" in job.error
    assert not Job.objects.filter(parent_id=job.pk).exists()


def test_max_steps_fails_the_job_keeping_its_output():
    job = scheduler.get_job(scheduler.schedule("loop"))
    assert job.status == "failed"
    assert job.error_type == "MaxStepsExceeded"
    assert "max_steps (5)" in job.error
    assert job.output == 5


def test_non_json_output_fails_naming_state_and_key():

    def bad(ctx):
        ctx.set("when", dt.date(2026, 1, 1))
        return ctx

    job = run_in_one_state("bad_data", "Dated", bad)
    assert job.status == "failed"
    assert "'Dated'" in job.error and "when" in job.error
