"""The sweep on a clock: what ``envoy_worker`` and ``envoy_sweep`` run every SWEEP_INTERVAL.

In ``rq`` mode the supervisor of ``envoy_worker`` runs it beside its
workers, and the jobs it sends go to the queue. In ``immediate`` mode
``envoy_worker`` is only this loop: the jobs it finds (due ``run_at`` jobs,
timed-out waits, stranded or crashed jobs) run in its own process. One
sweep's failure (the database restarting) is logged and the next one tries
again.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.db import close_old_connections, connections

from envoy_django.conf import envoy_settings
from envoy_django.scheduler.schedules import run_due_schedules
from envoy_django.scheduler.sweep import cleanup_orphaned_jobs

log = logging.getLogger("envoy_django.sweep")


def sweep_once() -> dict[str, Any] | None:
    """One sweep, the due cron schedules, and one retention batch if ENVOY["RETENTION"] is set.

    The counts, or None if it failed (logged).
    """
    try:
        counts = cleanup_orphaned_jobs()
        counts["scheduled"] = len(run_due_schedules())
        if envoy_settings.RETENTION is not None:
            from envoy_django.scheduler.retention import purge_finished

            counts["purged"] = purge_finished(envoy_settings.RETENTION, max_batches=1).jobs
        return counts
    except Exception:
        log.exception("sweep failed; will try again in %ss", envoy_settings.SWEEP_INTERVAL)
        connections.close_all()
        return None
    finally:
        close_old_connections()


class Sweeper:
    """Sweeps every SWEEP_INTERVAL until stopped; the first SIGTERM or SIGINT stops it warmly.

    Warm: a job running in this process (immediate mode) finishes its
    transition and is handed back; a second signal exits at once.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise SystemExit(1)
        log.info("warm shutdown: finishing the transition in flight (signal again to force)")
        self.stop.set()

    def run(self) -> None:
        from envoy_django.dispatch.immediate import dispatcher

        dispatcher.should_stop = self.stop.is_set
        try:
            while not self.stop.is_set():
                sweep_once()
                self.stop.wait(envoy_settings.SWEEP_INTERVAL)
        finally:
            dispatcher.should_stop = None
