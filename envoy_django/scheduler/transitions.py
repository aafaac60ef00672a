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
import json
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import OperationalError, connection
from django.db.models import Count, F, Model, Q
from django.utils import timezone

from envoy_django import registry, signals, tracing
from envoy_django.concurrency import describe
from envoy_django.conf import envoy_settings
from envoy_django.exceptions import InvalidArgumentError, LeaseLostError
from envoy_django.flow import StateFlow
from envoy_django.models import FINISHED_STATUSES, Job, JobStatus, SlotStatus, Step, Wait, WaitStatus
from envoy_django.payloads import storable_text
from envoy_django.scheduler import aftercommit, prepared, statements, waits
from envoy_django.scheduler.failures import log_failed
from envoy_django.scheduler.locks import advisory_lock, lock_key, lock_timeout

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
    """The job, its row locked until the transaction ends; None if there is no such job."""
    row = statements.fetch_one(statements.lock_job(job_id))
    return None if row is None else statements.from_row(Job, row)


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
    version: int = 1,
    run_after: dt.datetime | None = None,
    idempotency_key: str | None = None,
    parent: Job | None = None,
    parent_wait_id: str = "",
    concurrency_key: str | None = None,
    now: dt.datetime | None = None,
) -> Job:
    """A new pending job of ``flow``, sent to a worker after the commit.

    ``concurrency_key``: ``registry.concurrency_key(name, input)``, which
    the caller computed (and so checked) before its transaction.
    """
    now = now or timezone.now()
    job = Job(
        flow=name,
        flow_version=version,
        input=input,
        concurrency_key=concurrency_key,
        state=flow.start_state,
        max_steps=flow.max_steps,
        run_after=run_after,
        idempotency_key=idempotency_key,
        parent=parent,
        parent_wait_id=parent_wait_id,
        trace_parent=tracing.current_trace_parent(),
        created_at=now,
        updated_at=now,
        enqueued_at=now,
    )
    _insert(job)
    aftercommit.enqueue(job.pk, run_after, flow=name)
    aftercommit.send(signals.job_scheduled, job)
    return job


def _insert(job: Job) -> None:
    """``job.save()``, without compiling the INSERT each time on PostgreSQL (``statements.insert_job``)."""
    if connection.vendor != "postgresql":
        job.save(force_insert=True)
        return
    with prepared.cursor() as cursor:
        cursor.execute(*statements.insert_job(job))
    job._state.adding, job._state.db = False, connection.alias


INSERT_BATCH = 5000  # jobs per INSERT in create_many (one array per column, whatever the count)


class NewJob(NamedTuple):
    """One job for ``create_many``, its arguments checked by the caller."""

    name: str
    flow: StateFlow
    version: int
    input: Any
    run_after: dt.datetime | None
    idempotency_key: str | None
    concurrency_key: str | None


def create_many(jobs: list[NewJob]) -> list[Job]:
    """New pending jobs, sent to the workers after the commit: one INSERT per 1,000 rows; the rows, in order.

    Rows go in in the order of their idempotency keys: two callers inserting
    the same keys then meet at the first one they share (the later waits
    for the earlier, then finds the key taken) instead of each holding a key
    the other waits for, which PostgreSQL ends as a deadlock.
    """
    now = timezone.now()
    trace_parent = tracing.current_trace_parent()
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].idempotency_key or "")
    inserted = [
        Job(flow=job.name, flow_version=job.version, input=job.input, state=job.flow.start_state,
            max_steps=job.flow.max_steps, run_after=job.run_after, idempotency_key=job.idempotency_key,
            concurrency_key=job.concurrency_key, trace_parent=trace_parent, created_at=now, updated_at=now,
            enqueued_at=now)
        for job in (jobs[i] for i in order)
    ]
    if connection.vendor == "postgresql" and inserted:
        with connection.cursor() as cursor:
            for start in range(0, len(inserted), INSERT_BATCH):
                cursor.execute(*statements.insert_jobs(inserted[start:start + INSERT_BATCH]))
        for job in inserted:
            job._state.adding, job._state.db = False, connection.alias
    else:
        Job.objects.bulk_create(inserted, batch_size=1000)
    placed = dict(zip(order, inserted, strict=True))
    rows = [placed[i] for i in range(len(jobs))]
    for job in rows:
        aftercommit.enqueue(job.pk, job.run_after, flow=job.flow)
        aftercommit.send(signals.job_scheduled, job)
    return rows


# --- claiming ------------------------------------------------------------------

_LOCKED = object()
_POISON = object()
_UNGATED = object()  # not a job that must take a slot first


def claim(job_id: Any, owner: str) -> Held | None:
    """Take the job to run it, or None if it is not ours to run (running elsewhere, finished, not due, no slot)."""
    limited = registry.limited_flows()
    if connection.vendor == "postgresql":
        held = _claim_at_once(job_id, owner, limited)
        if held is not None:
            return held
    result: Any = _UNGATED
    if limited:
        gated = (
            Job.objects.filter(pk=job_id, status=JobStatus.PENDING, flow__in=limited)
            .exclude(slot=SlotStatus.HELD).values_list("flow", "concurrency_key").first()
        )
        if gated:
            try:
                result = _claim_slot(job_id, owner, *gated)
            except OperationalError as exc:  # the slot's lock wait ran out, or the database went away
                log.warning("job %s: could not take a slot (%s); the sweep sends it again", job_id, exc)
                return None
    if result is _UNGATED:
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


def _claim_at_once(job_id: Any, owner: str, limited: list[str]) -> Held | None:
    """The usual claim, a free and runnable job, in one statement: one round trip and one commit.

    The same statement reads the waits a resumed job finds ended, which its run would load next.

    A job of a ``limited`` flow that holds no slot yet takes the slot path instead.
    """
    now = timezone.now()
    with aftercommit.atomic(one_statement=True):
        row = statements.fetch_one(statements.claim(
            job_id, owner, now=now, lease_expires_at=lease_until(now), max_claims=envoy_settings.MAX_CLAIMS,
            gated_flows=limited, runnable=registry.runnable()))
        if row is None:
            return None
        job = statements.from_row(Job, row)
        first_start, was_status, was_owner, ended = row[statements.width(Job):]
        if was_status == JobStatus.RUNNING:
            log.info("job %s: taking over from %s, whose lease expired", job.pk, was_owner)
        if first_start:
            aftercommit.send(signals.job_started, job)
    return Held(job, owner, [EndedWait(*wait) for wait in json.loads(ended)])


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
        if not _runnable_here(job):
            return None
        if job.claims >= envoy_settings.MAX_CLAIMS:
            return _POISON
        return _take(job, owner, now)


def _runnable_here(job: Job) -> bool:
    """Whether this process has the job's flow version; if not, a pending job says so (and it is logged, once).

    Such a job is left as it is, sent: the sweep sends it again within the
    bound, until a process that has its version (an old or a new worker,
    in a rolling deploy) claims it. It is never run on other code, nor failed.
    """
    if registry.has_version(job.flow, job.flow_version):
        return True
    reason = f"flow {job.flow!r} version {job.flow_version} is not registered in this process"
    if job.status == JobStatus.PENDING and job.pending_reason != reason:
        log.warning("job %s: %s; leaving it for a process that has it", job.pk, reason)
        Job.objects.filter(pk=job.pk).update(pending_reason=reason)
        job.pending_reason = reason
    return False


def _take(job: Job, owner: str, now: dt.datetime, **extra: Any) -> Held:
    """Lease the locked, runnable ``job`` to ``owner``."""
    first_start = job.started_at is None
    values = dict(
        status=JobStatus.RUNNING,
        lease_owner=owner,
        lease_expires_at=lease_until(now),
        started_at=job.started_at or now,
        run_after=None,
        claims=job.claims + 1,
        pending_reason="",
        updated_at=now,
        **extra,
    )
    if job.slot == SlotStatus.WAITING and "slot" not in values:  # its flow lost its limit meanwhile
        values["slot"] = SlotStatus.NONE
    Job.objects.filter(pk=job.pk).update(**values)
    _assign(job, values)
    if first_start:
        aftercommit.send(signals.job_started, job)
    return Held(job, owner)


# --- concurrency limits: slots -------------------------------------------------------


def _lock_slots(flow: str, key: str, job_id: Any = None) -> None:
    """Serialize everything that counts or frees the slots of ``(flow, key)``, until the transaction ends.

    On PostgreSQL an advisory lock; on SQLite, which serializes writers, a
    first write (of ``job_id``'s row) makes this transaction the writer
    before it counts anything.
    """
    if connection.vendor == "postgresql":
        advisory_lock(lock_key("envoy-slots", flow, key))
    elif job_id is not None:
        Job.objects.filter(pk=job_id).update(updated_at=F("updated_at"))


def _claim_slot(job_id: Any, owner: str, flow: str, key: str | None) -> Any:
    """Claim a job of a limited flow that holds no slot: take one, or mark it waiting for one.

    The slots' lock comes before the job's row, and the row is not waited
    for (whoever holds it sends the job again, or ends it): a job ending
    holds rows first and the slots' lock second, so neither waits on the other.
    """
    limit = registry.limit_of(flow)
    if limit is None:
        return _UNGATED
    if key is None:  # scheduled before its flow had a limit
        try:
            key = limit.key_for(flow, Job.objects.filter(pk=job_id).values_list("input", flat=True).first())
        except InvalidArgumentError as exc:
            log.warning("job %s: %s; it shares the slots of key ''", job_id, exc)
            key = ""
    with aftercommit.atomic():
        lock_timeout(CLAIM_LOCK_WAIT)
        _lock_slots(flow, key, job_id)
        job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if job is None:
            return None
        now = timezone.now()
        if job.status != JobStatus.PENDING or job.slot == SlotStatus.HELD:
            return _UNGATED
        if job.run_after and job.run_after > now:
            return None
        if not _runnable_here(job):
            return None
        if job.claims >= envoy_settings.MAX_CLAIMS:
            return _POISON
        counts = Job.objects.filter(flow=flow, concurrency_key=key).aggregate(
            held=Count("pk", filter=Q(slot=SlotStatus.HELD)),
            ahead=Count("pk", filter=Q(slot=SlotStatus.WAITING) & (
                Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk))),
        )
        if counts["held"] + counts["ahead"] >= limit.max_active:
            reason = f"waiting for a slot: {describe(flow, key)} (max_active {limit.max_active})"
            values = dict(slot=SlotStatus.WAITING, concurrency_key=key, pending_reason=reason, updated_at=now)
            Job.objects.filter(pk=job.pk).update(**values)
            _assign(job, values)
            return None
        return _take(job, owner, now, slot=SlotStatus.HELD, concurrency_key=key)


def _free_slots(slots: set[tuple[str, str]], now: dt.datetime) -> None:
    """Jobs holding these slots ended: send the oldest jobs waiting for each, as many as are free now.

    Runs in the transaction that ended them, after their rows: the slots'
    locks in one order (by lock key), so two ends never wait on each other.
    A waiter whose row another transaction holds is skipped; the sweep's
    ``wake_waiting`` is the net under that.
    """
    for flow, key in sorted(slots, key=lambda slot: lock_key("envoy-slots", *slot)):
        _lock_slots(flow, key)
        _wake(flow, key, now, limit=BATCH_WAKE)


BATCH_WAKE = 1000


def _wake(flow: str, key: str, now: dt.datetime, *, limit: int) -> int:
    """Send the oldest jobs waiting for a slot of ``(flow, key)``, one per free slot (the caller locked them)."""
    rule = registry.limit_of(flow)
    of_key = Job.objects.filter(flow=flow, concurrency_key=key)
    free = limit if rule is None else rule.max_active - of_key.filter(slot=SlotStatus.HELD).count()
    if free <= 0:
        return 0
    woken = list(
        of_key.select_for_update(skip_locked=True).filter(slot=SlotStatus.WAITING, status=JobStatus.PENDING)
        .order_by("created_at", "pk").values_list("pk", flat=True)[: min(free, limit)]
    )
    if woken:
        Job.objects.filter(pk__in=woken).update(
            slot=SlotStatus.NONE, pending_reason="", updated_at=now, enqueued_at=now)
        for job_id in woken:
            aftercommit.enqueue(job_id, flow=flow)
    return len(woken)


def wake_waiting(now: dt.datetime, limit: int) -> int:
    """The sweep's net under slots: wake waiters of keys with a free slot, or of flows no longer limited.

    A job's end wakes its key's waiters in its own transaction; this finds
    what that could not see (a waiter's row held at that instant, a limit
    raised or removed by a deploy). One grouped query over the waiting and
    holding jobs, then a locked look at each key that seems to have room.
    """
    groups = (
        Job.objects.filter(slot__in=[SlotStatus.WAITING, SlotStatus.HELD])
        .values("flow", "concurrency_key")
        .annotate(held=Count("pk", filter=Q(slot=SlotStatus.HELD)),
                  waiting=Count("pk", filter=Q(slot=SlotStatus.WAITING)))
        .filter(waiting__gt=0)
        .order_by()
    )
    woken = 0
    for group in groups[:limit]:
        flow, key = group["flow"], group["concurrency_key"] or ""
        rule = registry.limit_of(flow)
        if rule is not None and group["held"] >= rule.max_active:
            continue
        _lock_slots(flow, key)
        woken += _wake(flow, key, now, limit=limit)
    return woken


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


class EndedWait(NamedTuple):
    """A wait of a claimed job's context that ended while the job waited on it."""

    wait_id: str
    status: str
    value: Any
    error: str


class Held:
    """A job this process claimed: its runner writes it only through here, fenced by the lease."""

    def __init__(self, job: Job, owner: str, ended_waits: list[EndedWait] | None = None) -> None:
        self.job = job
        self.owner = owner
        # The context's pending waits that have ended, when the claim read them; None: not read.
        self.ended_waits = ended_waits

    def _fence(self, **values: Any) -> None:
        updated = Job.objects.filter(pk=self.job.pk, lease_owner=self.owner, status=JobStatus.RUNNING).update(**values)
        if updated != 1:
            raise LeaseLostError(f"job {self.job.pk} is no longer held by {self.owner}")
        _assign(self.job, values)

    @property
    def ends_alone(self) -> bool:
        """Whether ending this job as done touches no other row: no parent waits on it, it frees no slot."""
        return not self.job.parent_id and self.job.slot != SlotStatus.HELD

    def lock_parent(self) -> None:
        """Before a write that ends the job (it resolves the parent's wait): parent before child."""
        if self.job.parent_id:
            lock(self.job.parent_id)

    def advance(self, values: dict[str, Any], step: Step, *, blocking: bool, finished: bool = False) -> None:
        """Commit a transition: the new checkpoint and its Step row, a renewed lease (or none, when it now blocks).

        ``finished``: the flow ended "finished" and the job ``ends_alone``, so
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
            assert self.ends_alone, "a job with a parent or a slot ends through finish()"
            values.update(status=JobStatus.DONE, finished_at=now, lease_owner="", lease_expires_at=None,
                          run_after=None)
        step.job_id = self.job.pk
        if connection.vendor == "postgresql":
            row = statements.fetch_one(statements.fenced_checkpoint(self.job.pk, self.owner, values, step))
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
        aftercommit.send(signals.job_retrying, self.job, error=error, attempt=attempt, run_after=run_after)

    def hold_until(self, run_after: dt.datetime, reason: str) -> None:
        """Not a failure: the job may not go on before ``run_after`` (a rate limit); pending until then.

        The attempt is not counted, nor is the claim (it was not the job's fault).
        """
        now = timezone.now()
        self._fence(status=JobStatus.PENDING, claims=max(self.job.claims - 1, 0), lease_owner="",
                    lease_expires_at=None, run_after=run_after, pending_reason=storable_text(reason)[:500],
                    updated_at=now, enqueued_at=now)
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
        """End the job (the caller locked the parent first: ``lock_parent``).

        A parent this end resumes goes to this thread first (``aftercommit.running_woken``).
        """
        self._fence(updated_at=timezone.now())
        finish(self.job, status, wakes_here=True, **kwargs)


def _assign(row: Model, values: dict[str, Any]) -> None:
    for key, value in values.items():
        setattr(row, key, value)


# --- ending, and what an end sets off ----------------------------------------------


def finish(
    job: Job,
    status: str,
    *,
    error: str = "",
    error_type: str = "",
    traceback: str = "",
    fields: dict[str, Any] | None = None,
    wakes_here: bool = False,
) -> None:
    """End ``job`` (locked, parent first) as done, failed or cancelled, and tell whoever waits on it.

    Pending waits and escalations are cancelled; unfinished descendants are
    cancelled; the parent's wait on this job resolves. ``wakes_here``: the
    thread that ran the job may run the parent it resumes next.
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
        slot=SlotStatus.NONE,
        pending_reason="",
    )
    values.update(fields or {})
    freed = {(job.flow, job.concurrency_key or "")} if job.slot == SlotStatus.HELD else set()
    Job.objects.filter(pk=job.pk).update(**values)
    _assign(job, values)
    if status != JobStatus.DONE:
        waits.cancel_open([job.pk], now)
        freed |= _cancel_descendants(job, now)
    if freed:
        _free_slots(freed, now)
    if job.parent_id:
        _notify_parent(job, wakes_here)
    if status == JobStatus.DONE:
        aftercommit.send(signals.job_done, job)
    elif status == JobStatus.FAILED:
        aftercommit.send(signals.job_failed, job, error=values["error"])
    else:
        aftercommit.send(signals.job_cancelled, job)


def _cancel_descendants(job: Job, now: dt.datetime) -> set[tuple[str, str]]:
    """Cancel every unfinished job below ``job``, level by level, parents locked first.

    Returns the slots the cancelled jobs held (``_free_slots``).
    """
    freed: set[tuple[str, str]] = set()
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
        freed |= {(child.flow, child.concurrency_key or "") for child in children if child.slot == SlotStatus.HELD}
        values = dict(
            status=JobStatus.CANCELLED, error=f"cancelled with ancestor {job.pk}", error_type="", traceback="",
            finished_at=now, updated_at=now, lease_owner="", lease_expires_at=None, run_after=None,
            slot=SlotStatus.NONE, pending_reason="",
        )
        Job.objects.filter(pk__in=ids).update(**values)
        waits.cancel_open(ids, now)
        for child in children:
            _assign(child, values)
            aftercommit.send(signals.job_cancelled, child)
        level = ids
    return freed


def _notify_parent(child: Job, wakes_here: bool = False) -> None:
    """Resolve the parent's wait on ``child`` (the caller locked the parent before the child)."""
    if child.parent_id is None:
        return
    # The wait with its job in one read; the lock takes the wait's row (the parent's, this
    # transaction holds already).
    found = waits.lock_pending_with_job(child.parent_id, child.parent_wait_id)
    if found is None:
        return
    wait, parent = found
    # Only where a message would have taken it: the queue the child came on, and code that has its version.
    here = (wakes_here and registry.queue_of(parent.flow) == registry.queue_of(child.flow)
            and registry.has_version(parent.flow, parent.flow_version))
    resolve_wait(
        parent,
        wait,
        _CHILD_WAIT_STATUS[child.status],
        value=child.output,
        error=child.error if child.status != JobStatus.DONE else "",
        here=here,
    )


def resolve_wait(
    job: Job, wait: Wait, status: str, *, value: Any = None, error: str = "", resume: bool = True,
    here: bool = False, also: Sequence[tuple[Model, dict[str, Any]]] = (),
) -> bool:
    """Record ``wait``'s outcome; resume ``job`` (locked) if it was the last one (``here``: ``aftercommit.enqueue``).

    ``also``: other rows the outcome writes, (locked instance, values), such
    as the escalation's reply; written with the wait. Returns True when the
    job was resumed. The count of pending waits is read under the job's row
    lock, so of two waits resolving at once exactly one sees none left and
    sends the job.
    """
    now = timezone.now()
    values = dict(status=JobStatus.PENDING, updated_at=now, enqueued_at=now)
    if resume and job.status == JobStatus.BLOCKING and connection.vendor == "postgresql":
        # The rows, the wait's outcome and the resume in one statement (statements.resolve_and_resume).
        resolved = waits.outcome(status, value, error, now)
        statement = statements.resolve_and_resume(wait.pk, resolved, job.pk, values, also)
        resumed = statements.fetch_one(statement) is not None
        for row, row_values in also:
            _assign(row, row_values)
        _assign(wait, resolved)
        if not resumed:
            return False  # another wait is still pending
    else:
        for row, row_values in also:
            type(row)._default_manager.filter(pk=row.pk).update(**row_values)
            _assign(row, row_values)
        waits.record(wait, status, value=value, error=error, now=now)
        if not resume or job.status != JobStatus.BLOCKING:
            return False
        if not Job.objects.filter(pk=job.pk).exclude(waits.pending_of_job()).update(**values):
            return False  # another wait is still pending
    _assign(job, values)
    aftercommit.enqueue(job.pk, flow=job.flow, here=here)
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


def move_version(job: Job, version: int, state_map: dict[str, str]) -> None:
    """Put the locked, pending or blocking ``job`` on ``version`` of its flow, renaming states by ``state_map``.

    The checkpoint keeps everything else. A pending job is sent again, since
    a process may have left it alone for want of its old version.
    """
    now = timezone.now()
    context = job.context
    if context:
        context = {
            **context,
            "state": state_map.get(context["state"], context["state"]),
            "waits": {wait_id: {**wait, "state": state_map.get(wait["state"], wait["state"])} if "state" in wait
                      else wait for wait_id, wait in (context.get("waits") or {}).items()},
        }
    values: dict[str, Any] = dict(flow_version=version, state=state_map.get(job.state, job.state), context=context,
                                  updated_at=now)
    sent = job.status == JobStatus.PENDING and job.slot != SlotStatus.WAITING
    if sent:
        values.update(enqueued_at=now, pending_reason="")
    Job.objects.filter(pk=job.pk).update(**values)
    _assign(job, values)
    if sent:
        aftercommit.enqueue(job.pk, job.run_after, flow=job.flow)


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
        .exclude(slot=SlotStatus.WAITING)  # woken by a job of its key ending, or by wake_waiting
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
