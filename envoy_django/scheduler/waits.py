"""Rows of waits and escalations: recording outcomes and replies, cancelling the open ones.

Called with the job they belong to already locked (see ``transitions``):
a job's rows are always locked after the job itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Exists, OuterRef

from envoy_django.models import Escalation, EscalationStatus, Job, Wait, WaitStatus
from envoy_django.scheduler import statements


def outcome(status: str, value: Any, error: str, now: dt.datetime) -> dict[str, Any]:
    """The columns of a resolved wait."""
    return {"status": status, "value": value, "error": error or "", "resolved_at": now}


def record(wait: Wait, status: str, *, value: Any = None, error: str = "", now: dt.datetime) -> None:
    """Store ``wait``'s outcome (the row is locked by the caller)."""
    values = outcome(status, value, error, now)
    for name, field_value in values.items():
        setattr(wait, name, field_value)
    wait.save(update_fields=list(values))


def pending_of_job() -> Exists:
    """For a Job queryset: the job has a pending wait (checked in the same statement as the write it guards)."""
    return Exists(Wait.objects.filter(job_id=OuterRef("pk"), status=WaitStatus.PENDING))


def cancel_open(job_ids: list[Any], now: dt.datetime) -> None:
    """Cancel the pending waits and escalations of jobs that ended."""
    Wait.objects.filter(job_id__in=job_ids, status=WaitStatus.PENDING).update(
        status=WaitStatus.CANCELLED, resolved_at=now
    )
    Escalation.objects.filter(job_id__in=job_ids, status=EscalationStatus.PENDING).update(
        status=EscalationStatus.CANCELLED, updated_at=now
    )


def reply(status: str, response: dict[str, Any], user: Any, username: str, now: dt.datetime) -> dict[str, Any]:
    """The columns of an escalation a person answered (``user``: the saved user, or None)."""
    return {"status": status, "response": response, "replied_by": user, "replied_by_username": username,
            "replied_at": now, "updated_at": now}


def lock_wait(job_id: Any, wait_id: str) -> Wait | None:
    """The job's wait ``wait_id``, its row locked; None if the job has none of that id."""
    row = statements.fetch_one(statements.lock_wait(job_id, wait_id))
    return None if row is None else statements.from_row(Wait, row)


def lock_escalation(escalation_id: Any, job_id: Any) -> tuple[Escalation, Wait] | None:
    """The job's escalation and the wait it resolves, both rows locked, in one read; None if it has none."""
    row = statements.fetch_one(statements.lock_escalation_and_wait(escalation_id, job_id))
    if row is None:
        return None
    return statements.from_row(Escalation, row), statements.from_row(Wait, row, statements.width(Escalation))


def lock_pending_with_job(job_id: Any, wait_id: str) -> tuple[Wait, Job] | None:
    """The job's wait ``wait_id`` if still pending, and the job, both rows locked, in one read."""
    row = statements.fetch_one(statements.lock_pending_wait_and_job(job_id, wait_id))
    if row is None:
        return None
    wait, job = statements.from_row(Wait, row), statements.from_row(Job, row, statements.width(Wait))
    wait.job = job
    return wait, job


def peek_escalation(escalation_id: Any) -> tuple[Any, Any, str, str] | None:
    """(job id, parent id, status, replied_by_username) of the escalation, unlocked; None if there is none."""
    row = statements.fetch_one(statements.peek_escalation(escalation_id))
    if row is None:
        return None
    job_id, parent_id, status, username = row
    return (statements.loaded(Escalation, "job", job_id), statements.loaded(Job, "parent", parent_id),
            status, username)


def peek(job_id: Any, wait_id: str) -> tuple[str, str, Any] | None:
    """(type, status, the job's parent id) of the job's wait ``wait_id``, unlocked; None if it has none."""
    row = statements.fetch_one(statements.peek_wait(job_id, wait_id))
    if row is None:
        return None
    kind, status, parent_id = row
    return kind, status, statements.loaded(Job, "parent", parent_id)
