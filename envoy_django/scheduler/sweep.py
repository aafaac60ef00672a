"""The recovery sweep: what a crashed worker or a flushed Redis left behind.

Every ``envoy_worker`` runs it every SWEEP_INTERVAL seconds; a PostgreSQL
advisory lock lets only one run do the work at a time. Rows another
transaction holds are skipped, not waited for, so the sweep never stalls
behind a running job.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from envoy_django.conf import envoy_settings
from envoy_django.dispatch import enqueue_on_commit
from envoy_django.models import Job, JobStatus, Wait, WaitStatus
from envoy_django.scheduler.outcomes import resolve_wait

log = logging.getLogger("envoy_django.sweep")

BATCH = 1000
_LOCK_KEY = 0x656E766F79  # "envoy"


def cleanup_orphaned_jobs() -> dict[str, Any]:
    """Re-enqueue jobs whose lease expired and pending jobs no queue holds; expire timed-out waits.

    Returns counts: ``expired_leases``, ``requeued``, ``timed_out_waits``, and
    ``skipped`` (True when another process was sweeping).
    """
    counts: dict[str, Any] = {"expired_leases": 0, "requeued": 0, "timed_out_waits": 0, "skipped": False}
    with transaction.atomic():
        if not _try_lock():
            counts["skipped"] = True
            return counts
        now = timezone.now()
        counts["expired_leases"] = _requeue_expired_leases(now)
        counts["timed_out_waits"] = _expire_waits(now)
        counts["requeued"] = _requeue_unheld_pending(now)
    if counts["expired_leases"] or counts["requeued"] or counts["timed_out_waits"]:
        log.info("sweep: %s", counts)
    return counts


def _try_lock() -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite serializes writers anyway
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _requeue_expired_leases(now: dt.datetime) -> int:
    jobs = list(
        Job.objects.select_for_update(skip_locked=True)
        .filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
        .only("pk", "lease_owner")[:BATCH]
    )
    for job in jobs:
        log.warning("job %s: lease of %s expired; re-enqueueing", job.pk, job.lease_owner)
    ids = [job.pk for job in jobs]
    if ids:
        Job.objects.filter(pk__in=ids).update(
            status=JobStatus.PENDING, lease_owner="", lease_expires_at=None, updated_at=now
        )
        for job_id in ids:
            enqueue_on_commit(job_id)
    return len(ids)


def _expire_waits(now: dt.datetime) -> int:
    waits = list(
        Wait.objects.select_for_update(skip_locked=True)
        .filter(status=WaitStatus.PENDING, expires_at__lt=now)
        .order_by("job_id")[:BATCH]
    )
    expired = 0
    for wait in waits:
        job = Job.objects.select_for_update(skip_locked=True).filter(pk=wait.job_id).first()
        if job is None:
            continue
        seconds = (wait.expires_at - wait.created_at).total_seconds()
        resolve_wait(job, wait, WaitStatus.TIMEOUT, error=f"wait {wait.wait_id!r} timed out after {seconds:g}s")
        expired += 1
    return expired


def _requeue_unheld_pending(now: dt.datetime) -> int:
    grace = now - dt.timedelta(seconds=envoy_settings.LEASE_SECONDS)
    due = Q(run_after__isnull=True, updated_at__lt=grace) | Q(run_after__lte=now)
    jobs = list(Job.objects.filter(due, status=JobStatus.PENDING).only("pk", "rq_job_id", "run_after")[:BATCH])
    if envoy_settings.EXECUTION == "rq":
        # A scheduled message is trusted until its time plus the grace: past that,
        # RQ's scheduler, which should have moved it to the queue, is not running
        # (its lock outlives a killed process by a minute), so enqueue it now. If
        # the late message arrives after all, the claim makes it a no-op.
        overdue = {job.rq_job_id for job in jobs if job.run_after and job.run_after < grace}
        held = _held_by_queue([job.rq_job_id for job in jobs if job.rq_job_id], overdue)
        jobs = [job for job in jobs if job.rq_job_id not in held]
    for job in jobs:
        enqueue_on_commit(job.pk)
    return len(jobs)


def _held_by_queue(rq_ids: list[str], overdue: set[str] = frozenset()) -> set[str]:
    """RQ job ids still waiting in a queue, or in its scheduled registry and not ``overdue``."""
    if not rq_ids:
        return set()
    from rq.job import Job as RQJob
    from rq.job import JobStatus as RQStatus

    from envoy_django.dispatch.rq import get_queue

    queue = get_queue()
    held = set()
    for rq_job in RQJob.fetch_many(rq_ids, connection=queue.connection, serializer=queue.serializer):
        if rq_job is None:
            continue
        status = rq_job.get_status(refresh=False)
        if status in (RQStatus.QUEUED, RQStatus.DEFERRED) or (
            status == RQStatus.SCHEDULED and rq_job.id not in overdue
        ):
            held.add(rq_job.id)
    return held
