"""Every write of a job's status, lease, attempts, claims, run_after and enqueued_at.

The README's guarantees rest on this module, and a test fails if any other
module writes those columns (``tests/scheduler/test_job_writes.py``):

- **One lock order.** Parent before child (``lock_family``), and a job's
  waits and escalations after the job. Two operations on one family of jobs
  queue up instead of deadlocking.
- **One way to run.** ``claim`` is the only way a job becomes ``running``:
  it takes the row (waiting, with a bound, when another transaction holds a
  pending job), sets a lease and counts the claim. A job claimed
  ``MAX_CLAIMS`` times without committing anything fails as a poison job,
  so a worker that dies inside one transition every time cannot loop.
- **Fenced writes.** The runner changes its job only through ``Held``,
  whose every update matches only while the runner still holds the lease.
- **Runnable means sent.** Every write that makes a job pending records
  ``enqueued_at`` and stages the enqueue (``aftercommit``); the sweep sends
  again any pending job that nobody claimed within the bound.

Every function here runs inside ``aftercommit.atomic()``; they take the row
locks they need and expect the caller to hold the ones they say.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import OperationalError, connection
from django.db.models import Q
from django.utils import timezone

from envoy_django import signals
from envoy_django.conf import envoy_settings
from envoy_django.exceptions import LeaseLostError
from envoy_django.flow import StateFlow
from envoy_django.models import FINISHED_STATUSES, Job, JobStatus, Step, Wait, WaitStatus
from envoy_django.payloads import storable_text
from envoy_django.scheduler import aftercommit, statements, waits
from envoy_django.scheduler.failures import log_failed
from envoy_django.scheduler.locks import lock_timeout

log = logging.getLogger("envoy_django.executor")

# How long a claim waits for the row of a pending job that another
# transaction holds (the reply that resumed it, or the reply that lost to it).
CLAIM_LOCK_WAIT = 5.0

# How a child's end resolves the parent's wait on it.
_CHILD_WAIT_STATUS: dict[str, str] = {
    JobStatus.DONE: WaitStatus.DONE,
    JobStatus.FAILED: WaitStatus.FAILED,
    JobStatus.CANCELLED: WaitStatus.CANCELLED,
}


def lease_until(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=envoy_settings.LEASE_SECONDS)


# --- locks ---------------------------------------------------------------------


def lock(job_id: Any) -> Job | None:
    return Job.objects.select_for_update().filter(pk=job_id).first()


_UNKNOWN = object()


def lock_family(job_id: Any, parent_id: Any = _UNKNOWN) -> Job | None:
    """Lock the job's parent, then the job: the one lock order used everywhere.

    ``parent_id``, if the caller read it already (a job's parent never
    changes), saves looking it up.
    """
    if parent_id is _UNKNOWN:
        parent_id = Job.objects.filter(pk=job_id).values_list("parent_id", flat=True).first()
    if parent_id:
        lock(parent_id)
    return lock(job_id)


# --- creating ------------------------------------------------------------------


def create(
    name: str,
    flow: StateFlow,
    input: Any,
    *,
    run_after: dt.datetime | None = None,
    idempotency_key: str | None = None,
    parent: Job | None = None,
    parent_wait_id: str = "",
    now: dt.datetime | None = None,
) -> Job:
    """A new pending job of ``flow``, sent to a worker after the commit."""
    now = now or timezone.now()
    job = Job.objects.create(
        flow=name,
        input=input,
        state=flow.start_state,
        max_steps=flow.max_steps,
        run_after=run_after,
        idempotency_key=idempotency_key,
        parent=parent,
        parent_wait_id=parent_wait_id,
        created_at=now,
        updated_at=now,
        enqueued_at=now,
    )
    aftercommit.enqueue(job.pk, run_after, flow=name)
    aftercommit.send(signals.job_scheduled, job)
    return job


def create_many(
    jobs: list[tuple[str, StateFlow, Any, dt.datetime | None, str | None]],
) -> list[Job]:
    """New pending jobs, each ``(name, flow, input, run_after, idempotency_key)``: one INSERT per 1,000 rows."""
    now = timezone.now()
    rows = Job.objects.bulk_create(
        [
            Job(flow=name, input=input, state=flow.start_state, max_steps=flow.max_steps, run_after=run_after,
                idempotency_key=idempotency_key, created_at=now, updated_at=now, enqueued_at=now)
            for name, flow, input, run_after, idempotency_key in jobs
        ],
        batch_size=1000,
    )
    for job in rows:
        aftercommit.enqueue(job.pk, job.run_after, flow=job.flow)
        aftercommit.send(signals.job_scheduled, job)
    return rows


# --- claiming ------------------------------------------------------------------

_LOCKED = object()
_POISON = object()


def claim(job_id: Any, owner: str) -> Held | None:
    """Take the job to run it, or None if it is not ours to run (running elsewhere, finished, not due)."""
    if connection.vendor == "postgresql":
        held = _claim_at_once(job_id, owner)
        if held is not None:
            return held
    # Not free to take at once: held by another transaction, a poison job, or not ours to run.
    result = _try_claim(job_id, owner, wait=False)
    if result is _LOCKED:
        try:
            result = _try_claim(job_id, owner, wait=True)
        except OperationalError as exc:  # the lock wait ran out, or the database went away
            log.warning("job %s: could not take its row (%s); the sweep sends it again", job_id, exc)
            return None
    if result is _POISON:
        _fail_poison(job_id, owner)
        return None
    return result if isinstance(result, Held) else None


def _claim_at_once(job_id: Any, owner: str) -> Held | None:
    """The usual claim, a free and runnable job, in one statement: one round trip and one commit."""
    now = timezone.now()
    sql, params = statements.claim(job_id, owner, now=now, lease_expires_at=lease_until(now),
                                   max_claims=envoy_settings.MAX_CLAIMS)
    with aftercommit.atomic(one_statement=True):
        job = next(iter(Job.objects.raw(sql, params)), None)
        if job is None:
            return None
        extra = {name: job.__dict__.pop(name) for name in ("first_start", "was_status", "was_owner")}
        if extra["was_status"] == JobStatus.RUNNING:
            log.info("job %s: taking over from %s, whose lease expired", job.pk, extra["was_owner"])
        if extra["first_start"]:
            aftercommit.send(signals.job_started, job)
    return Held(job, owner)


def _try_claim(job_id: Any, owner: str, *, wait: bool) -> Any:
    with aftercommit.atomic():
        if wait:
            lock_timeout(CLAIM_LOCK_WAIT)
        job = Job.objects.select_for_update(skip_locked=not wait).filter(pk=job_id).first()
        if job is None:
            # Held by another transaction: if it is a pending job, that
            # transaction may be the very reply that made it runnable (or one
            # that lost to it); skipping would leave the job to the sweep.
            if not wait and Job.objects.filter(pk=job_id, status=JobStatus.PENDING).exists():
                return _LOCKED
            return None
        now = timezone.now()
        if job.status == JobStatus.PENDING:
            if job.run_after and job.run_after > now:
                return None
        elif job.status == JobStatus.RUNNING:
            if job.lease_expires_at and job.lease_expires_at > now:
                return None
            log.info("job %s: taking over from %s, whose lease expired", job.pk, job.lease_owner)
        else:
            return None
        if job.claims >= envoy_settings.MAX_CLAIMS:
            return _POISON
        first_start = job.started_at is None
        values = dict(
            status=JobStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=lease_until(now),
            started_at=job.started_at or now,
            run_after=None,
            claims=job.claims + 1,
            updated_at=now,
        )
        Job.objects.filter(pk=job.pk).update(**values)
        _assign(job, values)
        if first_start:
            aftercommit.send(signals.job_started, job)
        return Held(job, owner)


def _fail_poison(job_id: Any, owner: str) -> None:
    with aftercommit.atomic():
        job = lock_family(job_id)
        now = timezone.now()
        if job is None or job.claims < envoy_settings.MAX_CLAIMS:
            return
        if job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
            return
        if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
            return
        phase = (job.context or {}).get("phase", "enter")
        message = (
            f"job {job.pk} was claimed {job.claims} times without committing anything "
            f"(ENVOY['MAX_CLAIMS'] is {envoy_settings.MAX_CLAIMS}): the process running it probably dies "
            f"in state {job.state!r}, phase {phase!r}"
        )
        Step.objects.create(
            job_id=job.pk, number=job.step, state=job.state, phase=phase, attempt=job.attempts + 1,
            error=message, worker=owner, started_at=now, finished_at=now,
        )
        finish(job, JobStatus.FAILED, error=message, error_type="PoisonJob")
    log_failed(job, message)


class Held:
    """A job this process claimed: its runner writes it only through here, fenced by the lease."""

    def __init__(self, job: Job, owner: str) -> None:
        self.job = job
        self.owner = owner

    def _fence(self, **values: Any) -> None:
        updated = Job.objects.filter(pk=self.job.pk, lease_owner=self.owner, status=JobStatus.RUNNING).update(**values)
        if updated != 1:
            raise LeaseLostError(f"job {self.job.pk} is no longer held by {self.owner}")
        _assign(self.job, values)

    def lock_parent(self) -> None:
        """Before a write that ends the job (it resolves the parent's wait): parent before child."""
        if self.job.parent_id:
            lock(self.job.parent_id)

    def advance(self, values: dict[str, Any], step: Step, *, blocking: bool, finished: bool = False) -> None:
        """Commit a transition: the new checkpoint and its Step row, a renewed lease (or none, when it now blocks).

        ``finished``: the flow ended "finished" and no parent waits on it, so
        this same write ends the job as done (``finish`` has nothing else to
        do for such a job). On PostgreSQL the job's row and the Step go in one
        statement (``statements.fenced_checkpoint``): outside a transaction,
        the whole transition is one round trip and one commit.
        """
        now = timezone.now()
        values = {**values, "attempts": 0, "claims": 0, "updated_at": now, "lease_expires_at": lease_until(now)}
        if self.job.error or self.job.error_type:  # a retry succeeded: the failure is history now
            values.update(error="", error_type="", traceback="")
        if blocking:
            values.update(status=JobStatus.BLOCKING, lease_owner="", lease_expires_at=None)
        if finished:
            values.update(status=JobStatus.DONE, finished_at=now, lease_owner="", lease_expires_at=None,
                          run_after=None)
        step.job_id = self.job.pk
        if connection.vendor == "postgresql":
            sql, params = statements.fenced_checkpoint(self.job.pk, self.owner, values, step)
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
            if row is None:
                raise LeaseLostError(f"job {self.job.pk} is no longer held by {self.owner}")
            step.pk = row[0]
            step._state.adding, step._state.db = False, connection.alias
            _assign(self.job, values)
        else:
            self._fence(**values)
            step.save(force_insert=True)
        aftercommit.send(signals.step_finished, self.job, step=step)
        if finished:
            aftercommit.send(signals.job_done, self.job)

    def retry_later(self, *, attempt: int, run_after: dt.datetime | None, error: str, error_type: str,
                    traceback: str) -> None:
        """A failed attempt: back to pending, to run again at ``run_after`` (now if None)."""
        now = timezone.now()
        self._fence(
            status=JobStatus.PENDING, attempts=attempt, claims=0, lease_owner="", lease_expires_at=None,
            run_after=run_after, error=error, error_type=error_type, traceback=traceback,
            updated_at=now, enqueued_at=now,
        )
        aftercommit.enqueue(self.job.pk, run_after, flow=self.job.flow)

    def count_attempt(self, attempt: int) -> None:
        self._fence(attempts=attempt, updated_at=timezone.now())

    def block_again(self) -> None:
        """Claimed while a wait is still pending (a stray message): back to blocking."""
        self._fence(status=JobStatus.BLOCKING, claims=0, lease_owner="", lease_expires_at=None,
                    updated_at=timezone.now())

    def release(self) -> None:
        """Warm shutdown: hand the job back between transitions; this claim does not count."""
        now = timezone.now()
        self._fence(status=JobStatus.PENDING, claims=max(self.job.claims - 1, 0), lease_owner="",
                    lease_expires_at=None, updated_at=now, enqueued_at=now)
        aftercommit.enqueue(self.job.pk, flow=self.job.flow)

    def back_off(self, delay: float, *, counts: bool) -> None:
        """The run broke off on a database error: pending again, to run in ``delay`` seconds.

        ``counts``: whether this claim counts towards MAX_CLAIMS. A run that
        could not even record its failure (the schema behind the code, say)
        does not count: the job waits for the database to be right, instead
        of failing as poison because of it.
        """
        now = timezone.now()
        run_after = now + dt.timedelta(seconds=delay) if delay > 0 else None
        values: dict[str, Any] = dict(status=JobStatus.PENDING, lease_owner="", lease_expires_at=None,
                                      run_after=run_after, updated_at=now, enqueued_at=now)
        if not counts:
            values["claims"] = max(self.job.claims - 1, 0)
        self._fence(**values)
        aftercommit.enqueue(self.job.pk, run_after, flow=self.job.flow)

    def finish(self, status: str, **kwargs: Any) -> None:
        """End the job (the caller locked the parent first: ``lock_parent``)."""
        self._fence(updated_at=timezone.now())
        finish(self.job, status, **kwargs)


def _assign(job: Job, values: dict[str, Any]) -> None:
    for key, value in values.items():
        setattr(job, key, value)


# --- ending, and what an end sets off ----------------------------------------------


def finish(
    job: Job,
    status: str,
    *,
    error: str = "",
    error_type: str = "",
    traceback: str = "",
    fields: dict[str, Any] | None = None,
) -> None:
    """End ``job`` (locked, parent first) as done, failed or cancelled, and tell whoever waits on it.

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
    Job.objects.filter(pk=job.pk).update(**values)
    _assign(job, values)
    if status != JobStatus.DONE:
        waits.cancel_open([job.pk], now)
        _cancel_descendants(job, now)
    if job.parent_id:
        _notify_parent(job)
    if status == JobStatus.DONE:
        aftercommit.send(signals.job_done, job)
    elif status == JobStatus.FAILED:
        aftercommit.send(signals.job_failed, job, error=values["error"])
    else:
        aftercommit.send(signals.job_cancelled, job)


def _cancel_descendants(job: Job, now: dt.datetime) -> None:
    """Cancel every unfinished job below ``job``, level by level, parents locked first."""
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
        ids = [child.pk for child in children]
        values = dict(
            status=JobStatus.CANCELLED, error=f"cancelled with ancestor {job.pk}", error_type="", traceback="",
            finished_at=now, updated_at=now, lease_owner="", lease_expires_at=None, run_after=None,
        )
        Job.objects.filter(pk__in=ids).update(**values)
        waits.cancel_open(ids, now)
        for child in children:
            _assign(child, values)
            aftercommit.send(signals.job_cancelled, child)
        level = ids


def _notify_parent(child: Job) -> None:
    """Resolve the parent's wait on ``child`` (the caller locked the parent before the child)."""
    if child.parent_id is None:
        return
    parent = lock(child.parent_id)
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
    sees none left and sends the job.
    """
    now = timezone.now()
    waits.record(wait, status, value=value, error=error, now=now)
    if not resume or job.status != JobStatus.BLOCKING:
        return False
    values = dict(status=JobStatus.PENDING, updated_at=now, enqueued_at=now)
    if not Job.objects.filter(pk=job.pk).exclude(waits.pending_of_job()).update(**values):
        return False  # another wait is still pending
    _assign(job, values)
    aftercommit.enqueue(job.pk, flow=job.flow)
    aftercommit.send(signals.job_resumed, job)
    return True


def retry_failed(job: Job) -> None:
    """An operator's retry of a failed job (locked): pending again, with a fresh retry budget."""
    now = timezone.now()
    values = dict(
        status=JobStatus.PENDING, attempts=0, claims=0, error="", error_type="", traceback="",
        finished_at=None, run_after=None, updated_at=now, enqueued_at=now,
    )
    Job.objects.filter(pk=job.pk).update(**values)
    _assign(job, values)
    aftercommit.enqueue(job.pk, flow=job.flow)


# --- the sweep's writes --------------------------------------------------------------


def requeue_expired_leases(now: dt.datetime, limit: int) -> int:
    """Running jobs whose runner stopped renewing its lease: pending again, and sent."""
    jobs = list(
        Job.objects.select_for_update(skip_locked=True)
        .filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
        .only("pk", "lease_owner", "flow")[:limit]
    )
    for job in jobs:
        log.warning("job %s: lease of %s expired; sending it again", job.pk, job.lease_owner)
    ids = [job.pk for job in jobs]
    if ids:
        Job.objects.filter(pk__in=ids).update(
            status=JobStatus.PENDING, lease_owner="", lease_expires_at=None, updated_at=now, enqueued_at=now
        )
        for job in jobs:
            aftercommit.enqueue(job.pk, flow=job.flow)
    return len(ids)


def resend_unclaimed(now: dt.datetime, bound: float, limit: int, *, due_now: bool) -> int:
    """Pending jobs nobody claimed within ``bound`` seconds of being sent (or of falling due): send again.

    Whatever the queue claims to hold: a message can sit in a dead worker's
    registry, or vanish with Redis. Claims are fenced, so a duplicate is
    harmless. With ``due_now`` (immediate mode, where nothing else runs
    delayed jobs) a ``run_at`` job is sent as soon as it is due.
    """
    grace = now - dt.timedelta(seconds=bound)
    unclaimed = (Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=grace)) & (
        Q(run_after__isnull=True) | Q(run_after__lt=grace)
    )
    if due_now:
        unclaimed |= Q(run_after__lte=now)
    found = list(
        Job.objects.select_for_update(skip_locked=True)
        .filter(unclaimed, status=JobStatus.PENDING)
        .values_list("pk", "flow")[:limit]
    )
    if found:
        Job.objects.filter(pk__in=[pk for pk, _ in found]).update(enqueued_at=now)
        for job_id, flow in found:
            aftercommit.enqueue(job_id, flow=flow)
    return len(found)


def renew_leases(held: dict[str, str]) -> None:
    """The heartbeat: extend the leases this process still holds (job id -> owner); autocommit."""
    now = timezone.now()
    for job_id, owner in held.items():
        Job.objects.filter(pk=job_id, lease_owner=owner, status=JobStatus.RUNNING).update(
            lease_expires_at=lease_until(now)
        )
