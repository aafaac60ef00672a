"""What leaves a transaction once it commits: first the enqueues, then the signals.

A worker must never be handed a job whose row it cannot see yet, and a
receiver must hear only of what was committed; so both wait for the commit.
Every transaction that changes jobs is an ``atomic()`` block from here: the
enqueues and signals staged inside it go out from one robust ``on_commit``
callback registered at its end, which

- sends the enqueues first, so no receiver can stand between the commit
  and the worker;
- logs an enqueue that fails (Redis down) at WARNING and goes on: the job
  is committed as pending with its ``enqueued_at``, and the sweep sends it
  again once nobody claimed it within the bound;
- sends each signal with ``send_robust``: a receiver that raises is logged
  with its name and stops neither the other receivers nor the caller;
- then lets the dispatcher run what it was handed (``immediate`` mode runs
  the jobs here, after the signals that announced them).

A worker that ends a job which was the last thing its parent waited for
runs the parent next itself (``running_woken``): the parent is handed to
that thread instead of the queue, which saves the trip through it.

The caller never sees any of these failures: its work is committed, so its
call returns. Items are staged through ``on_commit`` callbacks of their own,
so a savepoint that rolls back takes its items with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal

log = logging.getLogger("envoy_django.aftercommit")


@dataclass
class _Staged:
    depth: int = 0  # atomic() blocks open in this thread
    jobs: list[tuple[str, dt.datetime | None, str | None]] = field(default_factory=list)  # id, at, queue
    signals: list[tuple[Signal, Any, dict[str, Any]]] = field(default_factory=list)
    woken: list[tuple[str, dt.datetime | None, str | None]] = field(default_factory=list)  # enqueue(here=True)


_local = threading.local()


def _staged() -> _Staged:
    staged = getattr(_local, "staged", None)
    if staged is None:
        staged = _local.staged = _Staged()
    return staged


@contextmanager
def atomic(*, one_statement: bool = False) -> Iterator[None]:
    """``transaction.atomic()`` whose staged enqueues and signals go out after the commit.

    ``one_statement``: the block writes with a single SQL statement. Where
    PostgreSQL would commit that statement on its own anyway (autocommit, no
    transaction open), the block opens none: BEGIN and COMMIT would be two
    more round trips for the same guarantee. What it staged goes out once
    the block's statement has returned, and is dropped if the block raised.
    """
    staged = _staged()
    if (one_statement and connection.vendor == "postgresql" and not connection.in_atomic_block
            and connection.get_autocommit()):
        staged.depth += 1
        try:
            yield
        except BaseException:
            staged.jobs.clear()
            staged.signals.clear()
            staged.woken.clear()
            raise
        finally:
            staged.depth -= 1
        try:
            flush()
        except Exception:  # as on_commit(robust=True) does: the caller's work is committed
            log.exception("sending what a commit staged failed")
        return
    with transaction.atomic():
        staged.depth += 1
        try:
            yield
        finally:
            staged.depth -= 1
        transaction.on_commit(flush, robust=True)


def enqueue(job_id: Any, at: dt.datetime | None = None, *, flow: str, here: bool = False) -> None:
    """Hand the job (of ``flow``) to a worker after the commit (at ``at``, if given), on its flow's queue.

    ``here``: the job was woken by the end of the job this thread runs; a
    thread inside ``running_woken`` runs it next itself, with no message.
    """
    from envoy_django.registry import queue_of

    _require_atomic()
    transaction.on_commit(partial(_stage_job, str(job_id), at, queue_of(flow), here))


@contextmanager
def running_woken() -> Iterator[list[tuple[str, dt.datetime | None, str | None]]]:
    """Keep the jobs this thread's job ends wake (``enqueue(here=True)``) for the thread to run next.

    The caller pops what it runs from the list it is given. What is left in
    it when the block ends (the worker was asked to stop, or a run raised)
    is enqueued then. A process that dies first leaves those jobs pending
    with their ``enqueued_at``, and the sweep sends them within the bound,
    as after any death between a commit and its enqueue.
    """
    outer = getattr(_local, "woken", None)
    woken: list[tuple[str, dt.datetime | None, str | None]] = []
    _local.woken = woken
    try:
        yield woken
    finally:
        _local.woken = outer
        if woken:
            _dispatch(woken)


def send(signal: Signal, job: Any, **kwargs: Any) -> None:
    """Send ``signal`` (``sender=Job``, ``job=job``, ``kwargs``) after the commit."""
    _require_atomic()
    from envoy_django.models import Job

    if signal.has_listeners(Job):  # most signals have no receiver on a worker: no work for them
        transaction.on_commit(partial(_stage_signal, signal, job, kwargs))


def _require_atomic() -> None:
    if _staged().depth <= 0:
        raise RuntimeError("envoy_django: job changes must run inside aftercommit.atomic()")


def _stage_job(job_id: str, at: dt.datetime | None, queue: str | None, here: bool) -> None:
    staged = _staged()
    (staged.woken if here else staged.jobs).append((job_id, at, queue))


def _stage_signal(signal: Signal, job: Any, kwargs: dict[str, Any]) -> None:
    _staged().signals.append((signal, job, kwargs))


def flush() -> None:
    """Send what the commit staged: enqueues, then signals, then run what immediate mode was handed."""
    from envoy_django.dispatch import get_dispatcher

    staged = _staged()
    jobs, staged.jobs = staged.jobs, []
    woken, staged.woken = staged.woken, []
    sent_signals, staged.signals = staged.signals, []
    runs_woken = getattr(_local, "woken", None)
    if runs_woken is not None:
        runs_woken.extend(woken)
    else:
        jobs += woken
    if jobs:
        _dispatch(jobs)
    for signal, job, kwargs in sent_signals:
        _send(signal, job, kwargs)
    get_dispatcher().run_enqueued()


def _dispatch(jobs: list[tuple[str, dt.datetime | None, str | None]]) -> None:
    from envoy_django.dispatch import get_dispatcher

    try:
        get_dispatcher().enqueue(jobs)
    except Exception as exc:  # Redis down: the sweep sends them again
        failed = [job_id for job_id, _, _ in jobs]
        log.warning(
            "could not hand %d job(s) to a worker (%s: %s); the sweep sends them again: %s",
            len(failed), type(exc).__name__, exc, ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else ""),
        )


def _send(signal: Signal, job: Any, kwargs: dict[str, Any]) -> None:
    from envoy_django.models import Job

    for receiver, result in signal.send_robust(sender=Job, job=job, **kwargs):
        if isinstance(result, Exception):
            log.error(
                "signal %s for job %s: receiver %s raised %s: %s",
                signal_name(signal), getattr(job, "pk", job), _qualname(receiver), type(result).__name__, result,
                exc_info=result,
            )


def signal_name(signal: Signal) -> str:
    from envoy_django import signals

    for name, value in vars(signals).items():
        if value is signal:
            return name
    return repr(signal)


def _qualname(receiver: Any) -> str:
    module = getattr(receiver, "__module__", None) or ""
    name = getattr(receiver, "__qualname__", None) or repr(receiver)
    return f"{module}.{name}" if module else name
