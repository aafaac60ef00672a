"""Advance one job: claim it, then step its flow, one committed transition at a time.

The claim (``transitions.claim``) makes sure the job runs in one place; every
write after it goes through ``transitions.Held``, fenced by the lease, so a
worker that lost the job cannot commit history twice.

Every exception ends somewhere visible:

- a handler's is a failed attempt: retried after a backoff, then failed;
- an engine error, or a database error that running again cannot fix
  (``DataError``, ``IntegrityError``...), fails the job at once, with its
  type, message and traceback on the job and a Step row saying where;
- an ``OperationalError`` (the connection dropped, a lock timed out) hands
  the job back to run again after a backoff; this counts as a claim that
  committed nothing, so one that keeps happening ends as a poison job
  (``ENVOY["MAX_CLAIMS"]``), never as a job that loops forever;
- a failure whose failure cannot be recorded either (say, code deployed
  ahead of its migrations) hands the job back for LEASE_SECONDS without
  counting the claim: it waits for the database to be right, instead of
  failing as poison because of it;
- if even handing back cannot be written, the lease runs out and the
  sweep sends the job again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from django.db import OperationalError, close_old_connections
from django.utils import timezone

from envoy_django import faults, signals, tracing
from envoy_django.conf import envoy_settings
from envoy_django.exceptions import EnvoyError, HandlerError, LeaseLostError, RateLimitedError
from envoy_django.flow import Context, StateFlow
from envoy_django.flow.results import (
    EscalationWait,
    EventWait,
    NewWait,
    SpawnWait,
    StepResult,
    WaitOutcome,
    WaitResult,
)
from envoy_django.models import Escalation, JobStatus, Step, Wait, WaitStatus, WaitType
from envoy_django.payloads import check_size, check_text
from envoy_django.registry import concurrency_key, get_flow, latest
from envoy_django.scheduler import aftercommit, assignees, transitions
from envoy_django.scheduler.current import advancing
from envoy_django.scheduler.failures import format_exception, log_failed, log_retry
from envoy_django.scheduler.heartbeat import Heartbeat

log = logging.getLogger("envoy_django.executor")

_owner_local = threading.local()


def default_owner() -> str:
    """A lease owner name unique to this process and thread."""
    owner = getattr(_owner_local, "owner", None)
    if owner is None or owner[0] != os.getpid():
        host = socket.gethostname()[:100]
        name = f"{host}:{os.getpid()}:{threading.get_ident() % 100000}:{uuid.uuid4().hex[:6]}"
        owner = _owner_local.owner = (os.getpid(), name)
    return owner[1]


def run_job(job_id: Any, *, owner: str | None = None, should_stop: Callable[[], bool] | None = None) -> None:
    """Run the job until it blocks, ends or fails; do nothing if it is not ours to run."""
    try:
        job_id = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        log.error("refusing to run %r: not a job id", str(job_id)[:100])
        return
    owner = owner or default_owner()
    faults.point("before_claim", job_id)
    held = transitions.claim(job_id, owner)
    if held is None:
        return
    with Heartbeat.for_process().holding(str(job_id), owner), tracing.job_run(held.job, owner):
        _Run(held, should_stop or (lambda: False)).run()


def run_job_then_woken(job_id: Any, *, should_stop: Callable[[], bool] | None = None) -> None:
    """Run the job, then, in this thread, each parent its end resumed, and theirs: what a worker's message does.

    A worker that just ended a parent's last child is free, and the parent
    is due now: running it here saves it the trip through the queue (the
    enqueue, another worker's pickup: about 3 ms of each child-to-parent
    handover). Only a parent on the child's queue, whose version this code
    has, is kept here (``transitions._notify_parent``): where a message
    could have reached this worker too. Such a parent gets no message; if
    the worker is asked to stop first, the parent is enqueued then
    (``aftercommit.running_woken``), and if the process dies first, the
    sweep sends it within the recovery bound.
    """
    stop = should_stop or (lambda: False)
    with aftercommit.running_woken() as woken:
        run_job(job_id, should_stop=stop)
        while woken and not stop():
            parent_id = woken.pop(0)[0]
            faults.point("before_running_woken", parent_id)
            run_job(parent_id, should_stop=stop)


class _Run:
    """One claimed run of a job: the loop and how each outcome is committed."""

    def __init__(self, held: transitions.Held, should_stop: Callable[[], bool]) -> None:
        self.held = held
        self.job = held.job
        self.owner = held.owner
        self.should_stop = should_stop
        self.ctx: Context | None = None  # the last committed context, once loaded
        self.started = timezone.now()

    def run(self) -> None:
        try:
            self.loop()
        except LeaseLostError:
            log.warning("job %s: lease lost to another worker or an operator; stopping", self.job.pk)
        except OperationalError as exc:
            self._hand_back(exc)
        except Exception as exc:
            self._crashed(exc)

    def loop(self) -> None:
        try:
            flow = get_flow(self.job.flow, self.job.flow_version)
            ctx = self._load_context(flow)
        except EnvoyError as exc:
            self._fail(exc)
            return
        self.ctx = ctx
        while True:
            if ctx.done():
                self._end(ctx)
                return
            if ctx.waiting():
                with aftercommit.atomic():
                    self.held.block_again()
                return
            if self.should_stop():
                with aftercommit.atomic():
                    self.held.release()
                return
            self.started = timezone.now()
            try:
                with advancing(self.job, self.owner, self.started), tracing.transition(self.job, ctx, self.owner):
                    result = flow.advance(ctx)
                checkpoint = self._checkpoint(result.context)
                children = self._check_new_waits(result.new_waits)
            except HandlerError as exc:
                self._handler_failed(ctx, exc)
                return
            except EnvoyError as exc:
                self._fail(exc, ctx)
                return
            self._commit(ctx, result, checkpoint, children)
            after = result.context
            if after.done() or after.waiting():
                return
            ctx = self.ctx = after

    def _load_context(self, flow: StateFlow) -> Context:
        if not self.job.context:
            return flow.initial_context(self.job.input)
        pending = self.job.context.get("waits") or {}
        ended = self.held.ended_waits
        if ended is None:  # the claim did not read them (SQLite, or the locking path)
            ended = [transitions.EndedWait(*row) for row in
                     Wait.objects.filter(job_id=self.job.pk, wait_id__in=list(pending))
                     .exclude(status=WaitStatus.PENDING)
                     .values_list("wait_id", "status", "value", "error")]
        results: dict[str, WaitResult] = {
            wait.wait_id: {"status": cast(WaitOutcome, wait.status), "value": wait.value, "error": wait.error or None}
            for wait in ended
            if pending[wait.wait_id]["status"] == "pending"
        }
        return Context.from_serialized(self.job.context, results)

    def _checkpoint(self, ctx: Context) -> dict[str, Any]:
        """The context as the job's row will store it; refused here if the row could not (a DataError would recur).

        The engine already refused non-JSON values, so one walk for text
        PostgreSQL cannot hold and one size measure per value are enough.
        """
        checkpoint = ctx.serialize()
        where = f"of job {self.job.pk} in state {ctx.state()!r}"
        check_size(checkpoint["output"], f"output {where}")
        check_size(checkpoint["data"], f"data {where}")
        for wait in checkpoint["waits"].values():  # a child's input, an escalation's message and inputs
            if wait["status"] == "pending":
                check_size(wait["params"], f"{wait['type']} {wait['id']!r} {where}")
        check_text(checkpoint, f"context {where}")  # output, data, waits, ctx.error(...)
        return checkpoint

    # --- committing --------------------------------------------------------

    def _commit(self, before: Context, result: StepResult, checkpoint: dict[str, Any],
                children: dict[str, _Child]) -> None:
        after = result.context
        now = timezone.now()
        values: dict[str, Any] = dict(
            context=checkpoint,
            state=after.state(),
            step=after.step(),
            output=after.output(),
        )
        progress = after.progress()
        if progress:
            values.update(progress=progress["fraction"], progress_message=(progress["message"] or "")[:500])
        step = Step(
            number=result.step,
            state=result.state,
            phase=result.phase,
            next_state=after.state() if after.state() != result.state else "",
            attempt=self.job.attempts + 1,
            input=before.input(),
            output=after.output(),
            notes=after.notes(),
            worker=self.owner,
            started_at=self.started,
            finished_at=now,
        )
        blocking = bool(result.new_waits)
        finished = after.done() == "finished" and self.held.ends_alone
        if not blocking and (finished or not after.done()):
            # Nothing but the job's row and its Step: one statement, committed on its own.
            with aftercommit.atomic(one_statement=True):
                self.held.advance(values, step, blocking=False, finished=finished)
            return
        with aftercommit.atomic():
            if after.done():
                self.held.lock_parent()
            self.held.advance(values, step, blocking=blocking)
            failure = None
            if blocking:
                self._create_waits(result.new_waits, children, now)
                aftercommit.send(signals.job_blocked, self.job, waits=[w.id for w in result.new_waits])
            else:
                failure = self._finish_ended_flow(after)
        if failure:
            log_failed(self.job, failure)

    def _check_new_waits(self, new_waits: tuple[NewWait, ...]) -> dict[str, _Child]:
        """Before the transaction, so a bad wait fails the job cleanly: spawned flows and the people asked.

        Returns the children to create, by wait id.
        """
        flows = {}
        for wait in new_waits:
            where = f"state {wait.state!r} of job {self.job.pk}"
            if isinstance(wait, SpawnWait):
                try:
                    if wait.version is None:
                        flow, version = latest(wait.flow)
                    else:
                        flow, version = get_flow(wait.flow, wait.version), wait.version
                    flows[wait.id] = _Child(flow, version, concurrency_key(wait.flow, wait.input))
                except EnvoyError as exc:
                    raise _BadWaitError(f"{where} spawned: {exc}") from exc
            elif isinstance(wait, EscalationWait):
                missing = assignees.missing(wait.user, wait.group)
                if missing:
                    raise _BadWaitError(f"{where} escalated to {missing}")
        return flows

    def _create_waits(self, new_waits: tuple[NewWait, ...], children: dict[str, _Child],
                      now: dt.datetime) -> None:
        Wait.objects.filter(job_id=self.job.pk, wait_id__in=[w.id for w in new_waits]).delete()
        rows = []
        for wait in new_waits:
            timeout = wait.timeout if isinstance(wait, EventWait) else None
            row = Wait(job_id=self.job.pk, wait_id=wait.id, type=_WAIT_TYPES[type(wait)], params=wait.params,
                       expires_at=now + dt.timedelta(seconds=timeout) if timeout else None, created_at=now)
            if isinstance(wait, SpawnWait):
                child = children[wait.id]
                row.child = transitions.create(
                    wait.flow, child.flow, wait.input, version=child.version, parent=self.job,
                    parent_wait_id=wait.id, concurrency_key=child.concurrency_key, now=now,
                )
            elif isinstance(wait, EscalationWait):
                escalation = Escalation.objects.create(
                    job_id=self.job.pk,
                    wait_id=wait.id,
                    user=wait.user,
                    group=wait.group,
                    message=wait.message,
                    inputs=wait.inputs,
                    on_reject=wait.on_reject,
                    created_at=now,
                    updated_at=now,
                )
                aftercommit.send(signals.escalation_created, self.job, escalation=escalation)
            rows.append(row)
        Wait.objects.bulk_create(rows)

    def _finish_ended_flow(self, ctx: Context) -> str | None:
        """End the job as its flow ended (the caller locked the parent); the failure message, if it failed."""
        if ctx.done() == "finished":
            self.held.finish(JobStatus.DONE, fields={"output": ctx.output()})
            return None
        message = ctx.error() or f"flow ended with {ctx.done()}"
        self.held.finish(
            JobStatus.FAILED,
            error=message,
            error_type="FlowEnded" if ctx.done() == "error" else "MaxStepsExceeded",
            fields={"output": ctx.output()},
        )
        return message

    def _end(self, ctx: Context) -> None:
        """Claimed a job whose checkpoint already ended (e.g. a crash before finishing)."""
        with aftercommit.atomic():
            self.held.lock_parent()
            failure = self._finish_ended_flow(ctx)
        if failure:
            log_failed(self.job, failure)

    # --- failures ----------------------------------------------------------

    def _record_failed_step(self, ctx: Context | None, exc: BaseException, attempt: int) -> None:
        """A Step row for a failure, under the state, phase and input where it happened.

        One step may run several phases (empty ones are folded in), so a
        handler can fail in a later state than the checkpoint's.
        """
        _, message, traceback = format_exception(exc)
        if isinstance(exc, HandlerError) and exc.step is not None:
            number, state, input = exc.step, exc.state, exc.input
        elif ctx is not None:
            number, state, input = ctx.step(), ctx.state(), ctx.input()
        else:
            number, state, input = self.job.step, self.job.state, None
        Step.objects.create(
            job_id=self.job.pk,
            number=number,
            state=state,
            phase=getattr(exc, "phase", None) or (ctx.phase() if ctx else "enter"),
            attempt=attempt,
            input=input,
            output=None,
            error=message or type(exc).__name__,
            traceback=traceback,
            worker=self.owner,
            started_at=self.started,
            finished_at=timezone.now(),
        )

    def _handler_failed(self, ctx: Context, exc: HandlerError) -> None:
        if isinstance(exc.original, RateLimitedError):
            self._rate_limited(exc.original)
            return
        attempt = self.job.attempts + 1
        error_type, message, traceback = format_exception(exc)
        if attempt > envoy_settings.MAX_RETRIES:
            with aftercommit.atomic():
                self.held.lock_parent()
                self.held.count_attempt(attempt)
                self._record_failed_step(ctx, exc, attempt)
                self.held.finish(JobStatus.FAILED, error=message, error_type=error_type, traceback=traceback)
            log_failed(self.job, message, exc)
            return
        delay = retry_delay(attempt) if envoy_settings.EXECUTION != "immediate" else None
        run_after = timezone.now() + dt.timedelta(seconds=delay) if delay else None
        with aftercommit.atomic():
            self.held.retry_later(attempt=attempt, run_after=run_after, error=message, error_type=error_type,
                                  traceback=traceback)
            self._record_failed_step(ctx, exc, attempt)
        log_retry(self.job, message, attempt, envoy_settings.MAX_RETRIES, delay)

    def _rate_limited(self, exc: RateLimitedError) -> None:
        """Over a rate limit: back to pending until it has room; no worker sleeps, no attempt is spent."""
        with aftercommit.atomic():
            self.held.hold_until(exc.retry_at, f"waiting for rate limit {exc.name!r} ({exc.rate}) until "
                                               f"{exc.retry_at:%H:%M:%S} UTC")
        log.info("job %s: %s", self.job.pk, exc)

    def _fail(self, exc: BaseException, ctx: Context | None = None) -> None:
        """An error that running again cannot fix: fail now, no retry."""
        error_type, message, traceback = format_exception(exc)
        with aftercommit.atomic():
            self.held.lock_parent()
            self._record_failed_step(ctx or self.ctx, exc, self.job.attempts + 1)
            self.held.finish(JobStatus.FAILED, error=message, error_type=error_type, traceback=traceback)
        log_failed(self.job, message, exc)

    def _crashed(self, exc: Exception) -> None:
        """Anything else escaped the loop (a bug, a DataError): fail the job now, visibly."""
        try:
            self._fail(exc)
        except LeaseLostError:
            pass
        except Exception as recording:
            log.exception("job %s: failed with %s and the failure could not be recorded (%s: %s); "
                          "trying again in %ss", self.job.pk, type(exc).__name__, type(recording).__name__,
                          recording, envoy_settings.LEASE_SECONDS)
            self._back_off(envoy_settings.LEASE_SECONDS, counts=False)

    def _hand_back(self, exc: OperationalError) -> None:
        """The database let us down mid-run (a dropped connection, a lock timeout): run it again soon."""
        log.warning("job %s: database error (%s); handing it back", self.job.pk, exc)
        delay = retry_delay(self.job.claims) if envoy_settings.EXECUTION != "immediate" else 0.0
        self._back_off(delay, counts=True)

    def _back_off(self, delay: float, *, counts: bool) -> None:
        close_old_connections()
        try:
            with aftercommit.atomic():
                self.held.back_off(delay, counts=counts)
        except Exception:
            log.warning("job %s: could not hand it back either; the sweep sends it again once its lease expires",
                        self.job.pk)
            close_old_connections()


class _Child(NamedTuple):
    """A child job a state spawned: its flow, the version it starts on, its concurrency key."""

    flow: StateFlow
    version: int
    concurrency_key: str | None


_WAIT_TYPES = {EventWait: WaitType.EVENT, SpawnWait: WaitType.SPAWN, EscalationWait: WaitType.ESCALATION}


class _BadWaitError(EnvoyError):
    """A state spawned a flow that is not registered, or escalated to nobody who exists."""


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times 0.5..1."""
    base = envoy_settings.RETRY_BACKOFF * (2 ** (attempt - 1))
    return min(base, envoy_settings.RETRY_BACKOFF_MAX) * random.uniform(0.5, 1.0)
