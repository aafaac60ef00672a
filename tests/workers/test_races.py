"""Row locks on PostgreSQL: concurrent endings of sibling children both land."""

from __future__ import annotations

import pytest

from envoy_django import scheduler, signals
from envoy_django.models import Job, Wait
from tests.support import in_threads

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("attempt", range(5))
def test_two_children_ending_at_once_resume_the_parent_once(attempt):
    parent_id = scheduler.schedule("family", {"children": ["wait", "wait"]})
    children = list(Job.objects.filter(parent_id=parent_id).values_list("pk", flat=True))
    assert Job.objects.filter(pk__in=children, status="blocking").count() == 2

    resumed = []
    receiver = lambda sender, job, **kw: resumed.append(job.pk) if str(job.pk) == parent_id else None  # noqa: E731
    signals.job_resumed.connect(receiver)
    try:
        in_threads(*[lambda c=c: scheduler.resolve_blocking_job(c, "go", {"child": str(c)}) for c in children])
    finally:
        signals.job_resumed.disconnect(receiver)

    assert len(resumed) == 1
    assert set(Wait.objects.filter(job_id=parent_id, type="spawn").values_list("status", flat=True)) == {"done"}
    parent = scheduler.get_job(parent_id)
    assert parent.status == "blocking"  # now waiting for the payment event
    assert [r["status"] for r in parent.context["data"]["child_results"]] == ["done", "done"]
