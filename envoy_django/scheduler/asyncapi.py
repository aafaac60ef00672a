"""Async twins of the scheduler API, for async views and tasks: ``await scheduler.aschedule(...)``.

Each runs its sync twin through Django's ``sync_to_async`` (thread-sensitive,
as Django's own async ORM wrappers are): the transaction runs in the thread
Django keeps for sync code, and in "immediate" mode so do the jobs the call
runs, whose async handlers come back through ``async_to_sync`` and may use
the async ORM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from asgiref.sync import sync_to_async

from envoy_django.models import Job
from envoy_django.scheduler import api
from envoy_django.scheduler.api import JobId, Replier, ReplyStatus, ScheduleItem


async def aschedule(
    name: str, input: Any = None, *, run_at: dt.datetime | None = None, idempotency_key: str | None = None
) -> str:
    """``schedule()`` for async code."""
    return await sync_to_async(api.schedule)(name, input, run_at=run_at, idempotency_key=idempotency_key)


async def aschedule_many(items: Iterable[ScheduleItem]) -> list[str]:
    """``schedule_many()`` for async code."""
    return await sync_to_async(api.schedule_many)(list(items))


async def aget_job(job_id: JobId) -> Job:
    """``get_job()`` for async code."""
    return await sync_to_async(api.get_job)(job_id)


async def acancel_job(job_id: JobId) -> None:
    """``cancel_job()`` for async code."""
    await sync_to_async(api.cancel_job)(job_id)


async def afail_job(job_id: JobId, reason: str) -> None:
    """``fail_job()`` for async code."""
    await sync_to_async(api.fail_job)(job_id, reason)


async def aretry_job(job_id: JobId) -> None:
    """``retry_job()`` for async code."""
    await sync_to_async(api.retry_job)(job_id)


async def aresolve_blocking_job(job_id: JobId, wait_id: str, value: Any = None) -> None:
    """``resolve_blocking_job()`` for async code."""
    await sync_to_async(api.resolve_blocking_job)(job_id, wait_id, value)


async def areply_to_escalation(
    escalation_id: JobId, values: Mapping[str, Any] | None, status: ReplyStatus, *, user: Replier = None
) -> None:
    """``reply_to_escalation()`` for async code."""
    await sync_to_async(api.reply_to_escalation)(escalation_id, values, status, user=user)


async def alist_escalations(**filters: Any) -> list[dict[str, Any]]:
    """``list_escalations()`` for async code."""
    return await sync_to_async(api.list_escalations)(**filters)


async def alist_blocking_jobs(*, limit: int | None = None) -> list[dict[str, Any]]:
    """``list_blocking_jobs()`` for async code."""
    return await sync_to_async(api.list_blocking_jobs)(limit=limit)
