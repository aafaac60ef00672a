"""The happy path in the embedded mode: schedule, spawn, wait, escalate, finish."""

import pytest

from envoy_django import scheduler
from envoy_django.models import Escalation, Job, Step, Wait

pytestmark = pytest.mark.django_db(transaction=True)


def test_schedule_runs_a_flow_to_done():
    job_id = scheduler.schedule("hello", "Django")
    job = scheduler.get_job(job_id)
    assert job.status == "done"
    assert job.output == "Hello Django! Bye!"
    steps = list(job.steps.order_by("pk").values_list("state", "phase", "next_state", "error"))
    assert steps == [("Start", "state", "End", ""), ("End", "state", "", "")]


def test_family_flow_spawns_waits_and_escalates():
    job_id = scheduler.schedule("family", {"children": [3, 4]})
    job = scheduler.get_job(job_id)
    assert job.status == "blocking"
    children = list(Job.objects.filter(parent_id=job_id).order_by("input"))
    assert [c.status for c in children] == ["done", "done"]
    assert [c.output for c in children] == [6, 8]
    assert scheduler.list_blocking_jobs() == [
        {"job_id": job_id, "flow": "family", "state": "Spawn",
         "waits": [{"id": "payment", "type": "event", "status": "pending"}]},
    ]

    scheduler.resolve_blocking_job(job_id, "payment", {"amount": 42})
    job.refresh_from_db()
    assert job.status == "blocking"
    escalation = Escalation.objects.get(job_id=job_id)
    assert escalation.user == "alice" and escalation.status == "pending"

    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "note": "OK", "ok": True}, "approved", user="alice")
    job.refresh_from_db()
    assert job.status == "done"
    assert job.output["reply"] == {"status": "approved", "value": {"reason": "a", "note": "OK", "ok": True}, "error": None}
    assert job.output["payment"]["value"] == {"amount": 42}
    assert [r["value"] for r in job.output["children"]] == [6, 8]
    assert [r["status"] for r in job.output["children"]] == ["done", "done"]
    escalation.refresh_from_db()
    assert escalation.replied_by_username == "alice" and escalation.response["note"] == "OK"


def test_rejection_fails_the_job_by_default():
    job_id = scheduler.schedule("family", {"children": [1]})
    scheduler.resolve_blocking_job(job_id, "payment", None)
    escalation = Escalation.objects.get(job_id=job_id)
    scheduler.reply_to_escalation(escalation.pk, {"reason": "b", "note": "too risky"}, "rejected", user="bob")
    job = scheduler.get_job(job_id)
    assert job.status == "failed"
    assert job.error == "escalation rejected by bob: too risky"


def test_rejection_with_on_reject_continue_resumes_the_flow():
    job_id = scheduler.schedule("family", {"children": [1], "on_reject": "continue"})
    scheduler.resolve_blocking_job(job_id, "payment", None)
    escalation = Escalation.objects.get(job_id=job_id)
    scheduler.reply_to_escalation(escalation.pk, {"reason": "b"}, "rejected")
    job = scheduler.get_job(job_id)
    assert job.status == "done"
    assert job.output["reply"]["status"] == "rejected"
    assert job.output["reply"]["value"] == {"reason": "b", "note": None, "ok": False}


def test_failed_child_resolves_parent_wait_as_failed():
    job_id = scheduler.schedule("family", {"children": [2, "fail"]})
    scheduler.resolve_blocking_job(job_id, "payment", None)
    job = scheduler.get_job(job_id)
    assert job.status == "blocking"
    results = job.context["data"]["child_results"]
    assert results[0]["status"] == "done"
    assert results[1]["status"] == "failed"
    assert "child was asked to fail" in results[1]["error"]


def test_history_has_each_transition_once_in_commit_order():
    job_id = scheduler.schedule("ten_states")
    steps = list(Step.objects.filter(job_id=job_id).order_by("pk"))
    assert [s.state for s in steps] == [f"S{i}" for i in range(10)]
    assert [s.number for s in steps] == list(range(1, 11))
    assert scheduler.get_job(job_id).output == 10


def test_waits_are_rows():
    job_id = scheduler.schedule("family", {"children": [5]})
    kinds = sorted(Wait.objects.filter(job_id=job_id).values_list("type", "status"))
    assert kinds == [("event", "pending"), ("spawn", "done")]
