"""Row-level changes shared by the executor, the public API and the sweep.

Every function here runs inside a transaction that already holds the lock on
the job row it changes. Locks are always taken parent before child, so two
operations on one family of jobs queue up instead of deadlocking.
"""

from __future__ import annotations

import traceback as tb_module
from typing import Any

from django.db import transaction
from django.utils import timezone

from envoy_django import signals
from envoy_django.dispatch import enqueue_on_commit
from envoy_django.models import (
    FINISHED_STATUSES,
    Escalation,
    EscalationStatus,
    Job,
    JobStatus,
    Wait,
    WaitStatus,
)
from envoy_django.payloads import storable_text

# How a child's end resolves the parent's wait on it.
_CHILD_WAIT_STATUS = {
    JobStatus.DONE: WaitStatus.DONE,
    JobStatus.FAILED: WaitStatus.FAILED,
    JobStatus.CANCELLED: WaitStatus.CANCELLED,
}


def send_on_commit(signal: Any, job: Job, **kwargs: Any) -> None:
    transaction.on_commit(lambda: signal.send(sender=Job, job=job, **kwargs))


def lock_job(job_id: Any) -> Job | None:
    return Job.objects.select_for_update().filter(pk=job_id).first()


def lock_with_parent(job_id: Any) -> Job | None:
    """Lock the job's parent, then the job: the one lock order used everywhere."""
    parent_id = Job.objects.filter(pk=job_id).values_list("parent_id", flat=True).first()
    if parent_id:
        lock_job(parent_id)
    return lock_job(job_id)


def format_exception(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, traceback) of the exception a user cares about, storable as text."""
    original = getattr(exc, "original", None) or exc
    return (
        type(original).__qualname__,
        storable_text(str(exc)),
        storable_text("".join(tb_module.format_exception(type(original), original, original.__traceback__))),
    )


def finish_job(
    job: Job,
    status: str,
    *,
    error: str = "",
    error_type: str = "",
    traceback: str = "",
    fields: dict[str, Any] | None = None,
) -> None:
    """End ``job`` (locked) as done, failed or cancelled, and tell whoever waits on it.

    Pending waits and escalations are cancelled; unfinished descendants are
    cancelled; the parent's wait on this job resolves.
    """
    now = timezone.now()
    values = dict(
        status=status,
        error=storable_text(error),  # an operator's reason or ctx.error() may hold a NUL character
        error_type=error_type,
        traceback=traceback,
        finished_at=now,
        updated_at=now,
        lease_owner="",
        lease_expires_at=None,
        run_after=None,
    )
    values.update(fields or {})
    for key, value in values.items():
        setattr(job, key, value)
    Job.objects.filter(pk=job.pk).update(**values)
    if status != JobStatus.DONE:
        _cancel_open_waits([job.pk], now)
        cancel_descendants(job, now)
    if job.parent_id:
        notify_parent(job)
    if status == JobStatus.DONE:
        send_on_commit(signals.job_done, job)
    elif status == JobStatus.FAILED:
        send_on_commit(signals.job_failed, job, error=error)
    else:
        send_on_commit(signals.job_cancelled, job)


def _cancel_open_waits(job_ids: list, now: Any) -> None:
    Wait.objects.filter(job_id__in=job_ids, status=WaitStatus.PENDING).update(
        status=WaitStatus.CANCELLED, resolved_at=now
    )
    Escalation.objects.filter(job_id__in=job_ids, status=EscalationStatus.PENDING).update(
        status=EscalationStatus.CANCELLED, updated_at=now
    )


def cancel_descendants(job: Job, now: Any) -> list[Job]:
    """Cancel every unfinished job below ``job``, level by level, parents locked first."""
    cancelled: list[Job] = []
    level = [job.pk]
    while level:
        children = list(
            Job.objects.select_for_update()
            .filter(parent_id__in=level)
            .exclude(status__in=FINISHED_STATUSES)
            .order_by("pk")
        )
        if not children:
            break
        ids = [c.pk for c in children]
        Job.objects.filter(pk__in=ids).update(
            status=JobStatus.CANCELLED,
            error=f"cancelled with ancestor {job.pk}",
            finished_at=now,
            updated_at=now,
            lease_owner="",
            lease_expires_at=None,
        )
        _cancel_open_waits(ids, now)
        for child in children:
            child.status = JobStatus.CANCELLED
            send_on_commit(signals.job_cancelled, child)
        cancelled.extend(children)
        level = ids
    return cancelled


def notify_parent(child: Job) -> None:
    """Resolve the parent's wait on ``child``.

    The caller locked the parent before the child (``lock_with_parent``);
    locking it again here is a no-op that keeps this function safe alone.
    """
    parent = lock_job(child.parent_id)
    wait = (
        Wait.objects.select_for_update()
        .filter(job_id=child.parent_id, wait_id=child.parent_wait_id, status=WaitStatus.PENDING)
        .first()
    )
    if parent is None or wait is None:
        return
    resolve_wait(
        parent,
        wait,
        _CHILD_WAIT_STATUS[child.status],
        value=child.output,
        error=child.error if child.status != JobStatus.DONE else "",
    )


def resolve_wait(
    job: Job, wait: Wait, status: str, *, value: Any = None, error: str = "", resume: bool = True
) -> bool:
    """Record ``wait``'s outcome; resume ``job`` (locked) if it was the last one.

    Returns True when the job was resumed. The count of pending waits is read
    under the job's row lock, so of two waits resolving at once exactly one
    sees zero left and enqueues the job.
    """
    now = timezone.now()
    wait.status = status
    wait.value = value
    wait.error = error or ""
    wait.resolved_at = now
    wait.save(update_fields=["status", "value", "error", "resolved_at"])
    if not resume or job.status != JobStatus.BLOCKING:
        return False
    if Wait.objects.filter(job_id=job.pk, status=WaitStatus.PENDING).exists():
        return False
    job.status = JobStatus.PENDING
    job.updated_at = now
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PENDING, updated_at=now)
    send_on_commit(signals.job_resumed, job)
    enqueue_on_commit(job.pk)
    return True
