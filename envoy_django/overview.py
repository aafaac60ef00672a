"""What the admin's "Envoy overview" page shows, as queries cheap at 1,000,000 jobs.

Each reads unfinished rows through the status index, the last hour of
ends through ``envoy_job_finished`` (``finished_at, status``: an index-only
range scan), or a few rows of an index's end. None counts the finished
history, which is what a large table is made of.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from envoy_django.conf import envoy_settings
from envoy_django.models import UNFINISHED_STATUSES, Escalation, EscalationStatus, Job, JobStatus, SlotStatus

SHOWN = 10
STALLED_COUNTED = 100  # "100+" beyond this: counting further would read every stalled row


@dataclass
class Minute:
    at: dt.datetime
    done: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass
class Overview:
    unfinished: list[dict[str, Any]]  # {"flow", "pending", "running", "blocking", "total"}
    minutes: list[Minute]  # the last hour, oldest first
    escalations: list[Escalation]
    stalled: list[Job]
    stalled_count: int  # up to STALLED_COUNTED + 1
    workers: int | None  # None: no worker registry in this execution mode
    totals: dict[str, int] = field(default_factory=dict)


def unfinished_counts() -> list[tuple[str, str, int]]:
    """(flow, status, jobs) of every unfinished job, by the status index (the page and the metrics gauge)."""
    return list(Job.objects.filter(status__in=UNFINISHED_STATUSES).order_by().values_list("flow", "status")
                .annotate(n=Count("id")))


def pending_escalations_by_flow() -> list[tuple[str, int]]:
    """(flow, escalations waiting for a person), for the metrics gauge."""
    return list(Escalation.objects.filter(status=EscalationStatus.PENDING).order_by().values_list("job__flow")
                .annotate(n=Count("id")))


def unfinished_by_flow() -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for flow, status, n in unfinished_counts():
        entry = rows.setdefault(flow, {"flow": flow, "pending": 0, "running": 0, "blocking": 0})
        entry[status] = n
    for entry in rows.values():
        entry["total"] = entry["pending"] + entry["running"] + entry["blocking"]
    return sorted(rows.values(), key=lambda entry: (-entry["total"], entry["flow"]))


def last_hour(now: dt.datetime) -> list[Minute]:
    start = (now - dt.timedelta(minutes=59)).replace(second=0, microsecond=0)
    minutes = {start + dt.timedelta(minutes=i): Minute(start + dt.timedelta(minutes=i)) for i in range(60)}
    rows = (Job.objects.filter(finished_at__gte=start).order_by()
            .annotate(minute=TruncMinute("finished_at", tzinfo=dt.UTC)).values("minute", "status")
            .annotate(n=Count("id")))
    for row in rows:
        minute = minutes.get(row["minute"])
        if minute is not None and row["status"] in ("done", "failed", "cancelled"):
            setattr(minute, row["status"], row["n"])
    return list(minutes.values())


def stalled_jobs(now: dt.datetime) -> tuple[list[Job], int]:
    """Jobs past the recovery bound that nothing has moved: sent but unclaimed, or running on a lapsed lease.

    A job waiting for a slot or for its run_at is not stalled; one waiting
    for a process that has its flow version is (it says why).
    """
    bound = now - dt.timedelta(seconds=envoy_settings.LEASE_SECONDS + envoy_settings.SWEEP_INTERVAL)
    pending = (Q(status=JobStatus.PENDING, enqueued_at__lt=bound) & ~Q(slot=SlotStatus.WAITING)
               & (Q(run_after__isnull=True) | Q(run_after__lt=bound)))
    lapsed = Q(status=JobStatus.RUNNING, lease_expires_at__lt=bound)
    found = list(Job.objects.filter(pending | lapsed).order_by("created_at", "id")
                 .only("id", "flow", "status", "state", "pending_reason", "created_at", "enqueued_at")
                 [:STALLED_COUNTED + 1])
    return found[:SHOWN], len(found)


def oldest_escalations() -> list[Escalation]:
    return list(Escalation.objects.filter(status=EscalationStatus.PENDING).select_related("job")
                .only("id", "message", "user", "group", "created_at", "job__id", "job__flow")
                .order_by("created_at")[:SHOWN])


def overview() -> Overview:
    from envoy_django.metrics import live_workers

    now = timezone.now()
    unfinished = unfinished_by_flow()
    minutes = last_hour(now)
    stalled, stalled_count = stalled_jobs(now)
    try:
        workers = live_workers()
    except Exception:  # Redis down: the page still shows the database's picture
        workers = None
    return Overview(
        unfinished=unfinished, minutes=minutes, escalations=oldest_escalations(), stalled=stalled,
        stalled_count=stalled_count, workers=workers,
        totals={
            "unfinished": sum(entry["total"] for entry in unfinished),
            "done": sum(m.done for m in minutes),
            "failed": sum(m.failed for m in minutes),
            "cancelled": sum(m.cancelled for m in minutes),
        },
    )
