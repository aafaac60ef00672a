"""Limits under real worker processes: max_active per key, and a rate limit shared by every worker.

``limited_work`` allows one active job per ``input["key"]``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from envoy_django import scheduler
from envoy_django.models import Job
from envoy_django.testing.processes import wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def most_at_once(intervals):
    """The largest number of ``(start, end)`` intervals that overlap at any instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    # At equal times the end sorts first (-1 < 1): a job that starts as another ends is not an overlap.
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def test_two_workers_never_run_more_than_max_active_per_key(workers):
    workers.start(concurrency=2)
    workers.start(concurrency=2)
    keys = ["a", "b", "c"]
    ids = scheduler.schedule_many([("limited_work", {"key": keys[i % 3], "n": i}) for i in range(50)])
    wait_until(lambda: Job.objects.filter(pk__in=ids, status="done").count() == 50, what="50 limited jobs to finish")

    jobs = list(Job.objects.filter(pk__in=ids))
    assert {job.slot for job in jobs} == {""}
    per_key = {}
    for key in keys:
        intervals = [(job.started_at, job.finished_at) for job in jobs if job.concurrency_key == key]
        assert len(intervals) in (16, 17)
        per_key[key] = most_at_once(intervals)
    assert per_key == {"a": 1, "b": 1, "c": 1}  # max_active 1: one job of a key at a time
    # Four workers ran jobs side by side (so, without the limit, two of one key would have
    # overlapped: four jobs, three keys); it was the limit that kept each key to one.
    assert most_at_once([(job.started_at, job.finished_at) for job in jobs]) > 1


def test_a_rate_limit_is_shared_by_every_worker_process(workers):
    """``rate_limited`` takes calls from "test-api", 3 per 2 s window, counted in Redis (tests/settings.py)."""
    workers.start(concurrency=2)
    workers.start(concurrency=2)
    ids = scheduler.schedule_many([("rate_limited", i) for i in range(9)])
    wait_until(lambda: Job.objects.filter(pk__in=ids, status="done").count() == 9, what="9 rate-limited jobs")

    # A call counts in the window of the moment acquire() read the clock, somewhere between
    # the two times the handler took: a call whose two times straddle a boundary is in one
    # window or the other, so it is left out of the count rather than guessed.
    calls = [job.output for job in Job.objects.filter(pk__in=ids)]
    windows = Counter(int(before // 2) for before, after in calls if int(before // 2) == int(after // 2))
    assert max(windows.values()) <= 3, calls  # four workers, and never more than 3 calls in a window
    assert len({int(after // 2) for _, after in calls}) >= 3
    assert not Job.objects.filter(pk__in=ids).exclude(attempts=0).exists()  # waiting spent no retry
