"""ENVOY["EXECUTION"] = "tasks" on a real Tasks backend: django-tasks-db, with its own ``db_worker`` process.

The test process schedules, resolves and replies; every "run job X" goes
into django-tasks-db's table and its worker runs it (a flow with two
children, an outside event and an escalation), while an ``envoy_worker``
runs the recovery sweep beside it, as the README says to.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.test import override_settings

from envoy_django import scheduler
from envoy_django.models import Escalation, Job
from envoy_django.testing.processes import kill_group, wait_until
from tests.support import ROOT, worker_env

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

TASKS_DB = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture
def db_worker():
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "db_worker", "--settings", "tests.settings", "--queue-name", "*",
         "--interval", "0.1", "--no-startup-delay"],
        cwd=ROOT, env=worker_env("tasks"), stdin=subprocess.DEVNULL, start_new_session=True,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=30)
    finally:
        kill_group(process.pid)


def status(job_id):
    return Job.objects.get(pk=job_id).status


def test_a_flow_with_children_an_event_and_an_escalation_runs_on_django_tasks_db(db_worker, workers):
    from django_tasks_db.models import DBTaskResult

    workers.start(extra_env={"ENVOY_TEST_EXECUTION": "tasks"})  # in this mode: the sweep only
    with override_settings(TASKS=TASKS_DB, ENVOY={"EXECUTION": "tasks"}):
        job_id = scheduler.schedule("family", {"children": [3, 4]})
        wait_until(lambda: status(job_id) == "blocking" and Job.objects.filter(parent_id=job_id, status="done")
                   .count() == 2, what="the children to run and the parent to wait for its payment")
        scheduler.resolve_blocking_job(job_id, "payment", {"amount": 42})
        escalation = wait_until(lambda: Escalation.objects.filter(job_id=job_id).first(), what="the escalation")
        scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "note": "OK", "ok": True}, "approved",
                                      user="alice")
        wait_until(lambda: status(job_id) == "done", what="the job to finish")

    job = Job.objects.get(pk=job_id)
    assert [r["value"] for r in job.output["children"]] == [6, 8]
    assert job.output["payment"]["value"] == {"amount": 42}
    messages = DBTaskResult.objects.all()
    assert {m.task_path for m in messages} == {"envoy_django.dispatch.tasks_queue.perform"}
    assert set(messages.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert messages.count() >= 5  # the parent's start and two resumes, and each child
