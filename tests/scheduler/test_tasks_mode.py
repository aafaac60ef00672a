"""ENVOY["EXECUTION"] = "tasks": every "run job X" goes through the site's Django Tasks backend.

On Django 6 that is ``django.tasks``; on Django 5.2 the ``django-tasks``
backport (the ``[tasks]`` extra). Django's immediate backend runs each
message as it is enqueued; its dummy backend keeps them, so a test can look
at what was sent and play the worker.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.checks import check_envoy_settings
from envoy_django.dispatch.tasks_api import tasks_module
from envoy_django.models import Escalation, Job

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = tasks_module()
BACKENDS = f"{TASKS.__name__}.backends"


@contextmanager
def tasks_mode(backend: str, **params):
    with override_settings(TASKS={"default": {"BACKEND": f"{BACKENDS}.{backend}", **params}},
                           ENVOY={"EXECUTION": "tasks", "RETRY_BACKOFF": 0, "RETRY_BACKOFF_MAX": 0}):
        yield TASKS.task_backends["default"]


def test_a_flow_with_children_an_event_and_an_escalation_runs_on_the_immediate_backend():
    with tasks_mode("immediate.ImmediateBackend"):
        job_id = scheduler.schedule("family", {"children": [3, 4]})
        assert [c.output for c in Job.objects.filter(parent_id=job_id).order_by("input")] == [6, 8]
        assert Job.objects.get(pk=job_id).status == "blocking"
        scheduler.resolve_blocking_job(job_id, "payment", {"amount": 42})
        escalation = Escalation.objects.get(job_id=job_id)
        scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "note": "OK", "ok": True}, "approved",
                                      user="alice")
        job = Job.objects.get(pk=job_id)
    assert job.status == "done"
    assert [r["value"] for r in job.output["children"]] == [6, 8]
    assert job.output["payment"]["value"] == {"amount": 42}


def test_the_message_is_the_job_id_on_the_envoy_task_and_a_worker_runs_it():
    with tasks_mode("dummy.DummyBackend") as backend:
        backend.clear()
        job_id = scheduler.schedule("hello", "tasks")
        (sent,) = backend.results
        assert sent.task.module_path == "envoy_django.dispatch.tasks_queue.perform"
        assert (sent.args, sent.kwargs) == ([job_id], {})
        assert Job.objects.get(pk=job_id).status == "pending"
        sent.task.call(*sent.args)  # what the backend's worker does
        assert Job.objects.get(pk=job_id).output == "Hello tasks! Bye!"
        sent.task.call(*sent.args)  # a duplicate message is harmless
        assert Job.objects.get(pk=job_id).steps.count() == 2


def test_run_at_becomes_run_after_and_a_routed_flow_its_queue():
    later = timezone.now() + dt.timedelta(hours=1)
    with tasks_mode("dummy.DummyBackend", QUEUES=["default", "envoy-priority"]) as backend:
        backend.clear()
        scheduler.schedule("hello", run_at=later)
        scheduler.schedule("urgent_child", 2)
        delayed, routed = backend.results
    assert delayed.task.run_after == later and delayed.task.queue_name == "default"
    assert routed.task.queue_name == "envoy-priority" and routed.task.run_after is None


def test_a_backend_without_defer_gets_delayed_jobs_from_the_sweep_once_due():
    with tasks_mode("immediate.ImmediateBackend"):
        job_id = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(seconds=30))
        assert Job.objects.get(pk=job_id).status == "pending"  # nothing was sent: the backend cannot wait
        with mock.patch("django.utils.timezone.now", return_value=timezone.now() + dt.timedelta(seconds=31)):
            scheduler.cleanup_orphaned_jobs()
        assert Job.objects.get(pk=job_id).status == "done"


def test_a_backend_that_refuses_the_message_leaves_the_job_to_the_sweep(caplog):
    with tasks_mode("dummy.DummyBackend") as backend:  # no queue "envoy-priority": the backend refuses it
        backend.clear()
        job_id = scheduler.schedule("urgent_child", 2)
        assert backend.results == []
        assert "could not hand 1 job(s) to a worker" in caplog.text
        job = Job.objects.get(pk=job_id)
        assert job.status == "pending" and job.enqueued_at is not None  # the sweep's to send again


def test_checks_name_a_missing_backend_alias_and_an_unserved_queue():
    with override_settings(ENVOY={"EXECUTION": "tasks", "TASKS_BACKEND": "nope"}):
        assert [e.id for e in check_envoy_settings()] == ["envoy_django.E013"]
    with tasks_mode("dummy.DummyBackend"):
        errors = check_envoy_settings()
    # urgent_child, and the flow of the test EnvoyBackend's tasks on that queue
    assert [e.id for e in errors] == ["envoy_django.E014"] * 2
    assert [e.msg.split(" is registered")[0] for e in errors] == ["flow 'envoy.task.envoy-priority'",
                                                                 "flow 'urgent_child'"]
    assert "with queue 'envoy-priority', which the Tasks backend 'default' does not serve" in errors[1].msg
