"""The recovery sweep: whatever a crash, a lost message or a passing clock left unmoved.

It runs in every execution mode: ``envoy_worker`` runs it every
SWEEP_INTERVAL (in ``immediate`` mode too, where it is all the worker does),
``envoy_sweep`` runs it for sites that prefer cron, and anyone may call
``scheduler.cleanup_orphaned_jobs()``. Each run

- sends again the running jobs whose lease expired (their runner died);
- times out the waits whose ``timeout`` passed, resuming their jobs;
- sends again the pending jobs nobody claimed within LEASE_SECONDS of being
  sent (or of falling due), whatever the queue says it holds; in immediate
  mode it also runs delayed (``run_at``) jobs as soon as they are due;
- wakes jobs waiting for a slot of a key that has one free (or of a flow
  that lost its limit): a job's end wakes its key's oldest waiter itself,
  and this is the net under it.

So the recovery bound is LEASE_SECONDS + SWEEP_INTERVAL (plus the time to
pick the message up) in every path. A PostgreSQL advisory lock lets only one
process sweep at a time; rows another transaction holds are skipped, not
waited for, so the sweep never stalls behind a running job. In immediate
mode the jobs it sends run in this process before it returns.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.utils import timezone

from envoy_django.conf import envoy_settings
from envoy_django.models import Job, Wait, WaitStatus
from envoy_django.scheduler import aftercommit, transitions
from envoy_django.scheduler.locks import try_advisory_lock

log = logging.getLogger("envoy_django.sweep")

BATCH = 1000
_LOCK_KEY = 0x656E766F79  # "envoy"


def cleanup_orphaned_jobs() -> dict[str, Any]:
    """Send again what nobody will otherwise move; time out waits whose time passed.

    Returns counts: ``expired_leases``, ``requeued`` (pending jobs sent
    again), ``timed_out_waits``, ``woken`` (jobs that waited for a free
    slot), and ``skipped`` (True when another process was sweeping).
    """
    counts: dict[str, Any] = {"expired_leases": 0, "requeued": 0, "timed_out_waits": 0, "woken": 0,
                              "skipped": False}
    with aftercommit.atomic():
        if not try_advisory_lock(_LOCK_KEY):
            counts["skipped"] = True
            return counts
        now = timezone.now()
        counts["expired_leases"] = transitions.requeue_expired_leases(now, BATCH)
        counts["timed_out_waits"] = _expire_waits(now)
        counts["requeued"] = transitions.resend_unclaimed(
            now, envoy_settings.LEASE_SECONDS, BATCH, due_now=envoy_settings.EXECUTION != "rq"
        )
        counts["woken"] = transitions.wake_waiting(now, BATCH)
    if counts["expired_leases"] or counts["requeued"] or counts["timed_out_waits"] or counts["woken"]:
        log.info("sweep: %s", counts)
        from envoy_django.metrics import count_sweep

        count_sweep(counts)
    return counts


def _expire_waits(now: dt.datetime) -> int:
    due = list(
        Wait.objects.filter(status=WaitStatus.PENDING, expires_at__lt=now)
        .order_by("job_id")
        .values_list("pk", "job_id")[:BATCH]
    )
    expired = 0
    for wait_pk, job_id in due:
        # The job first, then its wait (the one lock order); skipped if busy: the next sweep gets it.
        job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if job is None:
            continue
        wait = Wait.objects.select_for_update(skip_locked=True).filter(pk=wait_pk, status=WaitStatus.PENDING).first()
        if wait is None or wait.expires_at is None:
            continue
        seconds = (wait.expires_at - wait.created_at).total_seconds()
        transitions.resolve_wait(
            job, wait, WaitStatus.TIMEOUT, error=f"wait {wait.wait_id!r} timed out after {seconds:g}s"
        )
        expired += 1
    return expired
