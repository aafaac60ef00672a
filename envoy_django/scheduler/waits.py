"""Rows of waits and escalations: recording outcomes and replies, cancelling the open ones.

Called with the job they belong to already locked (see ``transitions``):
a job's rows are always locked after the job itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Exists, OuterRef

from envoy_django.models import Escalation, EscalationStatus, Wait, WaitStatus


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


def record_reply(
    escalation: Escalation, status: str, response: dict[str, Any], user: Any, username: str, now: dt.datetime
) -> None:
    """Store a person's answer on the (locked) escalation."""
    escalation.status = status
    escalation.response = response
    escalation.replied_by = user
    escalation.replied_by_username = username
    escalation.replied_at = now
    escalation.updated_at = now
    escalation.save(update_fields=[
        "status", "response", "replied_by", "replied_by_username", "replied_at", "updated_at"])
