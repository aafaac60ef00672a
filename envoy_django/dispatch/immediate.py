"""Run jobs in the calling process, right after the scheduling transaction commits.

The embedded default (no Redis). Work a job makes runnable - children,
parents they resume, retries - is queued here and drained before the
outermost call returns, so callers see every touched job settled.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from uuid import UUID

_local = threading.local()
log = logging.getLogger("envoy_django.dispatch")


def enqueue(job_id: UUID | str, at: dt.datetime | None = None) -> None:
    if at is not None:
        # Delayed work (run_at) waits for a sweep to find it due.
        return
    queue: deque | None = getattr(_local, "queue", None)
    if queue is None:
        queue = _local.queue = deque()
    queue.append(str(job_id))
    if getattr(_local, "draining", False):
        return
    from envoy_django.scheduler.executor import run_job

    _local.draining = True
    first_error: Exception | None = None
    try:
        while queue:
            job_id = queue.popleft()
            try:
                run_job(job_id)
            except Exception as exc:
                # One job's infrastructure failure (say, a lost database
                # connection) must not strand the others queued behind it;
                # the sweep recovers this one from its last checkpoint.
                log.exception("job %s: could not run it in this process", job_id)
                first_error = first_error or exc
    finally:
        _local.draining = False
        queue.clear()
    if first_error is not None:
        raise first_error
