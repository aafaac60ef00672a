"""Advance one job: claim it, then step its flow, one committed transition at a time.

The claim (``SELECT ... FOR UPDATE SKIP LOCKED`` plus a lease) makes sure a
job runs in one place. Every checkpoint is fenced: the update only matches
while this worker still holds the lease, so a worker that lost the job (its
lease expired, or an operator cancelled it) cannot commit history twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import uuid
from typing import Any, Callable

from django.db import transaction
from django.utils import timezone

from envoy_django import signals
from envoy_django.conf import envoy_settings
from envoy_django.dispatch import enqueue_on_commit
from envoy_django.exceptions import (
    EnvoyError,
    HandlerError,
    LeaseLostError,
)
from envoy_django.flow import Context, StateFlow
from envoy_django.models import Escalation, Job, JobStatus, Step, Wait, WaitType
from envoy_django.payloads import check_size, check_text
from envoy_django.registry import get_flow
from envoy_django.scheduler.outcomes import (
    finish_job,
    format_exception,
    lock_job,
    send_on_commit,
)

log = logging.getLogger("envoy_django.executor")

_owner_local = threading.local()


def default_owner() -> str:
    """A lease owner name unique to this process and thread."""
    owner = getattr(_owner_local, "owner", None)
    if owner is None or owner[0] != os.getpid():
        name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}:{uuid.uuid4().hex[:6]}"
        owner = _owner_local.owner = (os.getpid(), name)
    return owner[1]


def lease_until(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=envoy_settings.LEASE_SECONDS)


def run_job(job_id: Any, *, owner: str | None = None, should_stop: Callable[[], bool] | None = None) -> None:
    """Run the job until it blocks, ends or fails; do nothing if it is not ours to run."""
    owner = owner or default_owner()
    job = _claim(job_id, owner)
    if job is None:
        return
    try:
        _Run(job, owner, should_stop or (lambda: False)).loop()
    except LeaseLostError:
        log.warning("job %s: lease lost to another worker or an operator; stopping", job_id)


def _claim(job_id: Any, owner: str) -> Job | None:
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if job is None:
            return None
        if job.status == JobStatus.PENDING:
            if job.run_after and job.run_after > now:
                return None
        elif job.status == JobStatus.RUNNING:
            if job.lease_expires_at and job.lease_expires_at > now:
                return None
            log.info("job %s: taking over from %s, whose lease expired", job.pk, job.lease_owner)
        else:
            return None
        first_start = job.started_at is None
        job.status = JobStatus.RUNNING
        job.lease_owner = owner
        job.lease_expires_at = lease_until(now)
        job.started_at = job.started_at or now
        job.run_after = None
        job.updated_at = now
        job.save(update_fields=["status", "lease_owner", "lease_expires_at", "started_at", "run_after", "updated_at"])
        if first_start:
            send_on_commit(signals.job_started, job)
    return job


class _Run:
    """One claimed run of a job: the loop and how each outcome is committed."""

    def __init__(self, job: Job, owner: str, should_stop: Callable[[], bool]) -> None:
        self.job = job
        self.owner = owner
        self.should_stop = should_stop

    def loop(self) -> None:
        try:
            flow = get_flow(self.job.flow)
            ctx = self._load_context(flow)
        except EnvoyError as exc:
            self._fail(exc)
            return
        while True:
            if ctx.done():
                self._end(ctx)
                return
            if ctx.waiting():
                self._block_again()
                return
            if self.should_stop():
                self._release()
                return
            started = timezone.now()
            try:
                after = flow.step(ctx)
                self._check_size(after)
            except HandlerError as exc:
                self._handler_failed(ctx, exc, started)
                return
            except EnvoyError as exc:
                self._fail(exc, ctx)
                return
            try:
                self._commit(ctx, after, started)
            except _SpawnError as exc:
                self._fail(exc, ctx)
                return
            if after.done() or after.waiting():
                return
            ctx = after

    def _load_context(self, flow: StateFlow) -> Context:
        if not self.job.context:
            return flow.initial_context(self.job.input)
        ctx = Context.from_serialized(self.job.context)
        pending = set(ctx.waiting())
        if pending:
            for wait in Wait.objects.filter(job_id=self.job.pk, wait_id__in=pending).exclude(status="pending"):
                ctx.resolve(wait.wait_id, wait.status, wait.value, wait.error or None)
        return ctx

    def _check_size(self, ctx: Context) -> None:
        """Refuse, before the commit, what the job's row could not store (a DataError there would recur).

        The engine already refused non-JSON values, so one walk for text
        PostgreSQL cannot hold and one size measure per value are enough.
        """
        where = f"of job {self.job.pk} in state {ctx.state()!r}"
        check_size(ctx.output(), f"output {where}")
        check_size(ctx._s["data"], f"data {where}")
        for wait in ctx._s["waits"].values():  # a child's input, an escalation's message and inputs
            if wait["status"] == "pending":
                check_size(wait["params"], f"{wait['type']} {wait['id']!r} {where}")
        check_text(ctx._s, f"context {where}")  # output, data, waits, ctx.error(...)

    # --- committing --------------------------------------------------------

    def _fence(self, **values: Any) -> None:
        """Update the job only if this worker still holds it."""
        updated = Job.objects.filter(pk=self.job.pk, lease_owner=self.owner, status=JobStatus.RUNNING).update(**values)
        if updated != 1:
            raise LeaseLostError(f"job {self.job.pk} is no longer held by {self.owner}")
        for key, value in values.items():
            setattr(self.job, key, value)

    def _commit(self, before: Context, after: Context, started: dt.datetime) -> None:
        state, phase, number = after.last_phase or (before.state(), before.phase(), before.step())
        now = timezone.now()
        new_waits = [w for w in after.waits() if w["status"] == "pending" and w["id"] not in before.waiting()]
        values: dict[str, Any] = dict(
            context=after.serialize(),
            state=after.state(),
            step=after.step(),
            output=after.output(),
            attempts=0,
            updated_at=now,
            lease_expires_at=lease_until(now),
        )
        progress = after.progress()
        if progress:
            values.update(progress=progress["fraction"], progress_message=(progress["message"] or "")[:500])
        children = self._children_to_create(new_waits)
        attempt = self.job.attempts + 1
        if new_waits:
            values.update(status=JobStatus.BLOCKING, lease_owner="", lease_expires_at=None)
        with transaction.atomic():
            if after.done() and self.job.parent_id:
                lock_job(self.job.parent_id)
            self._fence(**values)
            step = Step.objects.create(
                job_id=self.job.pk,
                number=number,
                state=state,
                phase=phase,
                next_state=after.state() if after.state() != state else "",
                attempt=attempt,
                input=before.input(),
                output=after.output(),
                worker=self.owner,
                started_at=started,
                finished_at=now,
            )
            transaction.on_commit(lambda: signals.step_finished.send(sender=Job, job=self.job, step=step))
            if new_waits:
                self._create_waits(new_waits, children, now)
                send_on_commit(signals.job_blocked, self.job, waits=[w["id"] for w in new_waits])
            elif after.done():
                self._finish_ended_flow(after)

    def _children_to_create(self, new_waits: list[dict]) -> dict[str, StateFlow]:
        """Look up spawned flows before the transaction, so a bad name fails cleanly."""
        flows = {}
        for wait in new_waits:
            if wait["type"] == "spawn":
                try:
                    flows[wait["id"]] = get_flow(wait["params"]["flow"])
                except EnvoyError as exc:
                    raise _SpawnError(f"state {wait['state']!r} of job {self.job.pk} spawned: {exc}") from exc
        return flows

    def _create_waits(self, new_waits: list[dict], children: dict[str, StateFlow], now: dt.datetime) -> None:
        Wait.objects.filter(job_id=self.job.pk, wait_id__in=[w["id"] for w in new_waits]).delete()
        rows = []
        for spec in new_waits:
            expires = now + dt.timedelta(seconds=spec["timeout"]) if spec["timeout"] else None
            row = Wait(job_id=self.job.pk, wait_id=spec["id"], type=spec["type"], params=spec["params"],
                       expires_at=expires, created_at=now)
            if spec["type"] == WaitType.SPAWN:
                child_flow = children[spec["id"]]
                child = Job.objects.create(
                    flow=spec["params"]["flow"],
                    input=spec["params"]["input"],
                    state=child_flow.start_state,
                    max_steps=child_flow.max_steps,
                    parent_id=self.job.pk,
                    parent_wait_id=spec["id"],
                    created_at=now,
                    updated_at=now,
                )
                row.child = child
                send_on_commit(signals.job_scheduled, child)
                enqueue_on_commit(child.pk)
            elif spec["type"] == WaitType.ESCALATION:
                params = spec["params"]
                escalation = Escalation.objects.create(
                    job_id=self.job.pk,
                    wait_id=spec["id"],
                    user=params["user"],
                    message=params["message"],
                    inputs=params["inputs"],
                    on_reject=params["on_reject"],
                    created_at=now,
                    updated_at=now,
                )
                send_on_commit(signals.escalation_created, self.job, escalation=escalation)
            rows.append(row)
        Wait.objects.bulk_create(rows)

    def _finish_ended_flow(self, ctx: Context) -> None:
        """The flow ended (finished, ctx.error(), max_steps); the caller holds the fenced job."""
        if ctx.done() == "finished":
            finish_job(self.job, JobStatus.DONE, fields={"output": ctx.output()})
        else:
            finish_job(
                self.job,
                JobStatus.FAILED,
                error=ctx.error() or f"flow ended with {ctx.done()}",
                error_type="FlowEnded" if ctx.done() == "error" else "MaxStepsExceeded",
                fields={"output": ctx.output()},
            )

    def _end(self, ctx: Context) -> None:
        """Claimed a job whose checkpoint already ended (e.g. a crash before finishing)."""
        with transaction.atomic():
            if self.job.parent_id:
                lock_job(self.job.parent_id)
            self._fence(updated_at=timezone.now())
            self._finish_ended_flow(ctx)

    def _block_again(self) -> None:
        """Claimed while a wait is still pending (a stray message): go back to blocking."""
        with transaction.atomic():
            self._fence(status=JobStatus.BLOCKING, lease_owner="", lease_expires_at=None, updated_at=timezone.now())

    def _release(self) -> None:
        """Warm shutdown: hand the job back to the queue between transitions."""
        with transaction.atomic():
            self._fence(status=JobStatus.PENDING, lease_owner="", lease_expires_at=None, updated_at=timezone.now())
            enqueue_on_commit(self.job.pk)

    # --- failures ----------------------------------------------------------

    def _record_failed_step(self, ctx: Context, exc: BaseException, started: dt.datetime, attempt: int) -> None:
        error_type, message, traceback = format_exception(exc)
        Step.objects.create(
            job_id=self.job.pk,
            number=ctx.step(),
            state=ctx.state(),
            phase=getattr(exc, "phase", None) or ctx.phase(),  # where it failed, not where the step began
            attempt=attempt,
            input=ctx.input(),
            output=None,
            error=message or error_type,
            traceback=traceback,
            worker=self.owner,
            started_at=started,
            finished_at=timezone.now(),
        )

    def _handler_failed(self, ctx: Context, exc: HandlerError, started: dt.datetime) -> None:
        attempt = self.job.attempts + 1
        error_type, message, traceback = format_exception(exc)
        if attempt > envoy_settings.MAX_RETRIES:
            with transaction.atomic():
                if self.job.parent_id:
                    lock_job(self.job.parent_id)
                self._fence(attempts=attempt)
                self._record_failed_step(ctx, exc, started, attempt)
                finish_job(self.job, JobStatus.FAILED, error=message, error_type=error_type, traceback=traceback)
            return
        now = timezone.now()
        run_after = None
        if envoy_settings.EXECUTION == "rq":
            run_after = now + dt.timedelta(seconds=retry_delay(attempt))
        with transaction.atomic():
            self._fence(
                status=JobStatus.PENDING,
                attempts=attempt,
                lease_owner="",
                lease_expires_at=None,
                run_after=run_after,
                error=message,
                error_type=error_type,
                traceback=traceback,
                updated_at=now,
            )
            self._record_failed_step(ctx, exc, started, attempt)
            enqueue_on_commit(self.job.pk, run_after)
        log.info("job %s: %s; retry %d of %d", self.job.pk, message, attempt, envoy_settings.MAX_RETRIES)

    def _fail(self, exc: BaseException, ctx: Context | None = None) -> None:
        """An error that running again cannot fix: fail now, no retry."""
        error_type, message, traceback = format_exception(exc)
        with transaction.atomic():
            if self.job.parent_id:
                lock_job(self.job.parent_id)
            self._fence(updated_at=timezone.now())
            if ctx is not None:
                self._record_failed_step(ctx, exc, timezone.now(), self.job.attempts + 1)
            finish_job(self.job, JobStatus.FAILED, error=message, error_type=error_type, traceback=traceback)


class _SpawnError(EnvoyError):
    """A state spawned a flow that is not registered."""


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times 0.5..1."""
    base = envoy_settings.RETRY_BACKOFF * (2 ** (attempt - 1))
    return min(base, envoy_settings.RETRY_BACKOFF_MAX) * random.uniform(0.5, 1.0)
