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


def test_sibling_children_ending_on_two_workers_hand_their_parent_to_exactly_one(workers):
    """The worker whose child ended last runs the parent; it resumes and runs once, on one worker."""
    from django.db.models import Count

    from envoy_django.models import Step
    from envoy_django.testing.processes import wait_until

    workers.start()
    workers.start()
    ids = [scheduler.schedule("pair", n) for n in range(40)]
    wait_until(lambda: Job.objects.filter(pk__in=ids, status="done").count() == len(ids), timeout=120,
               what="40 parents to finish")
    assert [Job.objects.get(pk=pk).output for pk in ids] == [4 * n + 2 for n in range(40)]
    resumes = Step.objects.filter(job_id__in=ids, phase="exit").values("job_id").annotate(n=Count("id"))
    assert {row["n"] for row in resumes} == {1} and len(resumes) == len(ids)
    assert not Step.objects.filter(job_id__in=ids).exclude(error="").exists()
    for pk in ids:  # resumed by a worker that ended one of its children, not through the queue
        resumed_by = Step.objects.get(job_id=pk, phase="exit").worker
        assert resumed_by in set(Step.objects.filter(job__parent_id=pk).values_list("worker", flat=True))
