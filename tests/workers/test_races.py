"""Row locks on PostgreSQL: concurrent endings of sibling children both land."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from envoy_django import scheduler, signals
from envoy_django.models import Job, Wait

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _in_threads(*calls):
    barrier = threading.Barrier(len(calls))
    errors = []

    def run(call):
        try:
            barrier.wait()
            call()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


@pytest.mark.parametrize("attempt", range(5))
def test_two_children_ending_at_once_resume_the_parent_once(attempt):
    parent_id = scheduler.schedule("family", {"children": ["wait", "wait"]})
    children = list(Job.objects.filter(parent_id=parent_id).values_list("pk", flat=True))
    assert Job.objects.filter(pk__in=children, status="blocking").count() == 2

    resumed = []
    receiver = lambda sender, job, **kw: resumed.append(job.pk) if str(job.pk) == parent_id else None  # noqa: E731
    signals.job_resumed.connect(receiver)
    try:
        _in_threads(*[lambda c=c: scheduler.resolve_blocking_job(c, "go", {"child": str(c)}) for c in children])
    finally:
        signals.job_resumed.disconnect(receiver)

    assert len(resumed) == 1
    assert set(Wait.objects.filter(job_id=parent_id, type="spawn").values_list("status", flat=True)) == {"done"}
    parent = scheduler.get_job(parent_id)
    assert parent.status == "blocking"  # now waiting for the payment event
    assert [r["status"] for r in parent.context["data"]["child_results"]] == ["done", "done"]
