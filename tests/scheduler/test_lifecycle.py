"""The happy path in both execution modes: schedule, spawn, wait, escalate, finish.

In "rq" mode the test works the queue in-process after each call (real
worker processes are in tests/workers); in "immediate" mode the calls
themselves ran everything.
"""

import pytest
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.models import Escalation, Job, Step, Wait
from envoy_django.testing.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)


class Mode:
    def __init__(self, execution):
        self.execution = execution

    def settle(self):
        if self.execution == "rq":
            drain()


@pytest.fixture(params=["immediate", "rq"], autouse=True)
def mode(request):
    if request.param == "rq":
        request.getfixturevalue("redis_conn")
    with override_settings(ENVOY={"EXECUTION": request.param, "RETRY_BACKOFF": 0, "RETRY_BACKOFF_MAX": 0}):
        yield Mode(request.param)


def schedule(mode, *args, **kwargs):
    job_id = scheduler.schedule(*args, **kwargs)
    mode.settle()
    return job_id


def resolve(mode, *args):
    scheduler.resolve_blocking_job(*args)
    mode.settle()


def reply(mode, *args, **kwargs):
    scheduler.reply_to_escalation(*args, **kwargs)
    mode.settle()


def test_schedule_runs_a_flow_to_done(mode):
    job_id = schedule(mode, "hello", "Django")
    job = scheduler.get_job(job_id)
    assert job.status == "done"
    assert job.output == "Hello Django! Bye!"
    steps = list(job.steps.order_by("pk").values_list("state", "phase", "next_state", "error"))
    assert steps == [("Start", "state", "End", ""), ("End", "state", "", "")]


def test_family_flow_spawns_waits_and_escalates(mode):
    job_id = schedule(mode, "family", {"children": [3, 4]})
    job = scheduler.get_job(job_id)
    assert job.status == "blocking"
    children = list(Job.objects.filter(parent_id=job_id).order_by("input"))
    assert [c.status for c in children] == ["done", "done"]
    assert [c.output for c in children] == [6, 8]
    assert scheduler.list_blocking_jobs() == [
        {"job_id": job_id, "flow": "family", "state": "Spawn",
         "waits": [{"id": "payment", "type": "event", "status": "pending"}]},
    ]

    resolve(mode, job_id, "payment", {"amount": 42})
    job.refresh_from_db()
    assert job.status == "blocking"
    escalation = Escalation.objects.get(job_id=job_id)
    assert escalation.user == "alice" and escalation.status == "pending"

    reply(mode, escalation.pk, {"reason": "a", "note": "OK", "ok": True}, "approved", user="alice")
    job.refresh_from_db()
    assert job.status == "done"
    answered = {"status": "approved", "value": {"reason": "a", "note": "OK", "ok": True}, "error": None}
    assert job.output["reply"] == answered
    assert job.output["payment"]["value"] == {"amount": 42}
    assert [r["value"] for r in job.output["children"]] == [6, 8]
    assert [r["status"] for r in job.output["children"]] == ["done", "done"]
    escalation.refresh_from_db()
    assert escalation.replied_by_username == "alice" and escalation.response["note"] == "OK"


def test_rejection_fails_the_job_by_default(mode):
    job_id = schedule(mode, "family", {"children": [1]})
    resolve(mode, job_id, "payment", None)
    escalation = Escalation.objects.get(job_id=job_id)
    reply(mode, escalation.pk, {"reason": "b", "note": "too risky"}, "rejected", user="bob")
    job = scheduler.get_job(job_id)
    assert job.status == "failed"
    assert job.error == "escalation rejected by bob: too risky"


def test_rejection_with_on_reject_continue_resumes_the_flow(mode):
    job_id = schedule(mode, "family", {"children": [1], "on_reject": "continue"})
    resolve(mode, job_id, "payment", None)
    escalation = Escalation.objects.get(job_id=job_id)
    reply(mode, escalation.pk, {"reason": "b"}, "rejected")
    job = scheduler.get_job(job_id)
    assert job.status == "done"
    assert job.output["reply"]["status"] == "rejected"
    assert job.output["reply"]["value"] == {"reason": "b", "note": None, "ok": False}


def test_failed_child_resolves_parent_wait_as_failed(mode):
    job_id = schedule(mode, "family", {"children": [2, "fail"]})
    resolve(mode, job_id, "payment", None)
    job = scheduler.get_job(job_id)
    assert job.status == "blocking"
    results = job.context["data"]["child_results"]
    assert results[0]["status"] == "done"
    assert results[1]["status"] == "failed"
    assert "child was asked to fail" in results[1]["error"]


def test_history_has_each_transition_once_in_commit_order(mode):
    job_id = schedule(mode, "ten_states")
    steps = list(Step.objects.filter(job_id=job_id).order_by("pk"))
    assert [s.state for s in steps] == [f"S{i}" for i in range(10)]
    assert [s.number for s in steps] == list(range(1, 11))
    assert scheduler.get_job(job_id).output == 10


def test_waits_are_rows(mode):
    job_id = schedule(mode, "family", {"children": [5]})
    kinds = sorted(Wait.objects.filter(job_id=job_id).values_list("type", "status"))
    assert kinds == [("event", "pending"), ("spawn", "done")]


def test_list_blocking_jobs_longest_blocked_first_with_a_limit(mode):
    first = schedule(mode, "parent_of_waiting_child")
    schedule(mode, "parent_of_waiting_child")
    listed = scheduler.list_blocking_jobs()
    assert len(listed) == 4  # two parents on their child, two children on "go"
    assert listed[0]["job_id"] == first
    assert [job["job_id"] for job in scheduler.list_blocking_jobs(limit=1)] == [first]
