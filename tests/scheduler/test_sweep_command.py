"""``envoy_sweep --once`` and ``cleanup_orphaned_jobs()`` in immediate mode run what they find before returning."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest
from django.core.management import call_command
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def _due_job() -> str:
    job_id = scheduler.schedule("hello", "cron", run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.filter(pk=job_id).update(run_after=timezone.now() - dt.timedelta(seconds=1))
    return job_id


@pytest.fixture(autouse=True)
def restore_logging():
    """The commands configure logging for a long-running process; undo it for the next test."""
    root, envoy = logging.getLogger(), logging.getLogger("envoy_django")
    handlers, level, envoy_level = list(root.handlers), root.level, envoy.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    envoy.setLevel(envoy_level)


def test_envoy_sweep_once_runs_the_due_jobs_and_prints_the_counts():
    job_id = _due_job()
    out = io.StringIO()
    call_command("envoy_sweep", "--once", stdout=out)
    assert json.loads(out.getvalue())["requeued"] == 1
    assert scheduler.get_job(job_id).output == "Hello cron! Bye!"


def test_the_sweep_runs_a_stranded_job_before_returning():
    job_id = scheduler.schedule("hello", "stranded", run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.filter(pk=job_id).update(run_after=None, enqueued_at=timezone.now() - dt.timedelta(minutes=5))
    assert scheduler.cleanup_orphaned_jobs()["requeued"] == 1
    assert scheduler.get_job(job_id).status == "done"


def test_a_pending_job_sent_moments_ago_is_left_to_its_runner():
    job_id = scheduler.schedule("hello", "soon", run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.filter(pk=job_id).update(run_after=None)  # sent at creation, a moment ago
    assert scheduler.cleanup_orphaned_jobs()["requeued"] == 0
    assert scheduler.get_job(job_id).status == "pending"


def test_envoy_worker_burst_in_immediate_mode_sweeps_once():
    job_id = _due_job()
    call_command("envoy_worker", "--burst", verbosity=0)
    assert scheduler.get_job(job_id).status == "done"


@pytest.mark.parametrize("queues", [["nope"], ["envoy", "elsewhere"]])
def test_envoy_worker_refuses_a_queue_rq_queues_lacks_naming_it(queues):
    from django.core.management import CommandError
    from django.test import override_settings

    args = [arg for queue in queues for arg in ("--queue", queue)]
    with override_settings(ENVOY={"EXECUTION": "rq"}), pytest.raises(CommandError) as raised:
        call_command("envoy_worker", *args, "--burst", verbosity=0)
    assert f"no queue {queues[-1]!r} in RQ_QUEUES (configured: 'envoy', 'envoy-priority')" in str(raised.value)
