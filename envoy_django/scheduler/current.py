"""The job whose handlers are running in this thread (or task), for code a handler calls.

A handler sees only its ``ctx``; code beneath it that must know which job
it serves - the Tasks backend building the ``TaskContext`` of a plain
``@task`` - reads it here. A ``ContextVar``, so ``async_to_sync`` and
threads started by the handler's own executor do not mix jobs up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envoy_django.models import Job


@dataclass(frozen=True)
class Running:
    job: Job
    owner: str  # the worker holding the lease
    started_at: dt.datetime


_running: ContextVar[Running | None] = ContextVar("envoy_running_job", default=None)


def running_job() -> Running | None:
    """The job being advanced in this context, or None outside a handler."""
    return _running.get()


@contextmanager
def advancing(job: Job, owner: str, started_at: dt.datetime) -> Iterator[None]:
    token = _running.set(Running(job, owner, started_at))
    try:
        yield
    finally:
        _running.reset(token)
