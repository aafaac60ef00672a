"""Prometheus metrics: what happened, counted where it happened; what is, read from the database.

Two kinds, from two sources, because each is only right from its own:

- **Counters and histograms** (transitions, retries, ends, handler time,
  schedule-to-start, sweep recoveries) are counted by the process that
  committed the event, from envoy's own after-commit signals, so a rolled
  back transition is never counted. Worker processes are many and restart,
  so they use prometheus_client's multiprocess mode: with
  ``PROMETHEUS_MULTIPROC_DIR`` set, each process writes its values to a
  file there and the endpoint sums the files, a dead process's included;
  a restart loses nothing. Reading them from the database instead would
  count at 1,000,000 jobs on every scrape, and retention deletes the rows
  a counter must never go back on.
- **Gauges** (unfinished jobs, pending escalations, live workers) are read
  from PostgreSQL and Redis at scrape time: they describe the whole
  system, whichever process serves the scrape.

``ENVOY["METRICS"] = True`` turns the counting on (the receivers are only
connected then, so a site without it pays nothing per transition).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

from django.db.models import Min
from django.utils import timezone

from envoy_django import signals
from envoy_django.conf import envoy_settings
from envoy_django.models import Escalation, EscalationStatus, Job

# Handler time: a no-op transition takes about a millisecond, a model call seconds.
TRANSITION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300)
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Instruments:
    """The counters and histograms of this process, made once prometheus_client is known to be there."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # A registry of our own: in multiprocess mode the values live in files, and the endpoint
        # reads those; otherwise it reads this registry (one process: the embedded default).
        self.registry = CollectorRegistry(auto_describe=True)
        kw: dict[str, Any] = {"registry": self.registry}
        self.transitions = Counter("envoy_transitions", "Committed transitions (Step rows), by flow.",
                                   ["flow"], **kw)
        self.finished = Counter("envoy_jobs_finished", "Jobs that ended, by flow and final status.",
                                ["flow", "status"], **kw)
        self.retries = Counter("envoy_retries", "Failed attempts that will run again, by flow.", ["flow"], **kw)
        self.recovered = Counter("envoy_sweep_recovered", "What the recovery sweep moved, by kind.", ["kind"], **kw)
        self.transition_seconds = Histogram("envoy_transition_seconds", "Handler time of a committed transition.",
                                            ["flow"], buckets=TRANSITION_BUCKETS, **kw)
        self.schedule_to_start = Histogram(
            "envoy_schedule_to_start_seconds", "From a job being due (scheduled, or its run_at) to its first claim.",
            ["flow"], buckets=START_BUCKETS, **kw)


_instruments: _Instruments | None = None


def instruments() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def install() -> None:
    """Connect the counting receivers (at start-up, when ``ENVOY["METRICS"]`` is on)."""
    instruments()
    signals.step_finished.connect(_on_step, dispatch_uid="envoy_django.metrics.step")
    signals.job_started.connect(_on_started, dispatch_uid="envoy_django.metrics.started")
    signals.job_retrying.connect(_on_retry, dispatch_uid="envoy_django.metrics.retry")
    signals.job_done.connect(_on_finished, dispatch_uid="envoy_django.metrics.done")
    signals.job_failed.connect(_on_finished, dispatch_uid="envoy_django.metrics.failed")
    signals.job_cancelled.connect(_on_finished, dispatch_uid="envoy_django.metrics.cancelled")


def _on_step(sender: Any, job: Job, step: Any, **kwargs: Any) -> None:
    counters = instruments()
    counters.transitions.labels(job.flow).inc()
    counters.transition_seconds.labels(job.flow).observe(
        max((step.finished_at - step.started_at).total_seconds(), 0.0))


def _on_started(sender: Any, job: Job, **kwargs: Any) -> None:
    if job.started_at is None:
        return
    due = max(job.created_at, job.run_after) if job.run_after else job.created_at
    instruments().schedule_to_start.labels(job.flow).observe(max((job.started_at - due).total_seconds(), 0.0))


def _on_retry(sender: Any, job: Job, **kwargs: Any) -> None:
    instruments().retries.labels(job.flow).inc()


def _on_finished(sender: Any, job: Job, **kwargs: Any) -> None:
    instruments().finished.labels(job.flow, job.status).inc()


def count_sweep(counts: dict[str, Any]) -> None:
    """What one sweep recovered, if counting is on (``install()`` made the instruments)."""
    if _instruments is None:
        return
    for kind in ("expired_leases", "requeued", "timed_out_waits", "woken"):
        if counts.get(kind):
            _instruments.recovered.labels(kind).inc(counts[kind])


# --- the scrape ------------------------------------------------------------


class DatabaseCollector:
    """Gauges read at scrape time: unfinished jobs, pending escalations, live workers.

    Each is one indexed query over unfinished rows (the status index, the
    pending-escalation index), so a scrape stays cheap at 1,000,000 jobs.
    """

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from envoy_django.overview import pending_escalations_by_flow, unfinished_counts

        jobs = GaugeMetricFamily("envoy_jobs", "Unfinished jobs, by flow and status.", labels=["flow", "status"])
        for flow, status, n in unfinished_counts():
            jobs.add_metric([flow, status], n)
        yield jobs

        escalations = GaugeMetricFamily("envoy_escalations_pending", "Escalations waiting for a person, by flow.",
                                        labels=["flow"])
        for flow, n in pending_escalations_by_flow():
            escalations.add_metric([flow], n)
        yield escalations
        pending = Escalation.objects.filter(status=EscalationStatus.PENDING)
        oldest = pending.aggregate(oldest=Min("created_at"))["oldest"]
        yield GaugeMetricFamily("envoy_escalation_oldest_pending_seconds",
                                "Age of the oldest escalation still waiting for a person (0: none).",
                                value=_age(oldest))

        workers = live_workers()
        if workers is not None:
            yield GaugeMetricFamily("envoy_workers", "Live envoy_worker processes (RQ workers on envoy's queues).",
                                    value=workers)


def _age(since: dt.datetime | None) -> float:
    return max((timezone.now() - since).total_seconds(), 0.0) if since else 0.0


def live_workers() -> int | None:
    """Worker processes registered in Redis on envoy's queues; None outside ``"rq"`` mode (no registry to ask)."""
    if envoy_settings.EXECUTION != "rq":
        return None
    from rq import Worker

    from envoy_django.dispatch.rq_queue import get_queue
    from envoy_django.registry import routed_queues

    names = {envoy_settings.QUEUE, *routed_queues().values()}
    seen: set[str] = set()
    for name in sorted(names):
        queue = get_queue(name)
        seen.update(worker.name for worker in Worker.all(queue=queue))
    return len(seen)


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_LocalCollector())
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _LocalCollector:
    """This process's counters, when there is no multiprocess directory to sum."""

    def collect(self) -> Iterator[Any]:
        if _instruments is not None:
            yield from _instruments.registry.collect()
