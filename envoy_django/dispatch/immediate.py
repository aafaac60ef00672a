"""Run jobs in the calling process, right after the transaction that made them runnable.

The embedded default (no Redis). Work a job makes runnable - children,
parents they resume, retries - joins the same in-process queue, which is
run to the end before the outermost call returns, so callers see every
touched job settled. Delayed work (``run_at``) is left to the sweep, which
runs it once it is due (``envoy_worker`` or ``envoy_sweep`` in this mode).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from django.utils import timezone

log = logging.getLogger("envoy_django.dispatch")


class ImmediateDispatcher(threading.local):
    """One queue per thread: a thread runs only the jobs its own calls made runnable."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.running = False
        # Set by a sweeper process (envoy_worker in this mode) for its warm shutdown.
        self.should_stop: Callable[[], bool] | None = None

    def enqueue(self, jobs: Sequence[tuple[str, dt.datetime | None, str | None]]) -> None:
        now = timezone.now()
        self.queue.extend(job_id for job_id, at, _ in jobs if at is None or at <= now)  # later: the sweep's

    def run_enqueued(self) -> None:
        if self.running:
            return  # an outer call in this thread is running the queue; it will get to these
        from envoy_django.scheduler.executor import run_job

        self.running = True
        try:
            while self.queue:
                if self.should_stop and self.should_stop():
                    # Each is committed as pending and sent: the next sweep runs it.
                    self.queue.clear()
                    break
                job_id = self.queue.popleft()
                try:
                    run_job(job_id, should_stop=self.should_stop)
                except Exception:
                    # The run loop records every failure it can; this is one it
                    # could not (say, the database went away). The job keeps its
                    # last checkpoint, and the sweep runs it again.
                    log.exception("job %s: could not run it in this process; the sweep will retry it", job_id)
        finally:
            self.running = False


dispatcher = ImmediateDispatcher()
