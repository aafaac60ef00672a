"""The public scheduler API (the original Envoy's, in snake_case).

Each call is one transaction: it either changes every row it means to, or
raises an error naming the job, wait or input at fault and changes none.
Work it makes runnable is enqueued after commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from envoy_django import signals
from envoy_django.dispatch import enqueue_on_commit
from envoy_django.exceptions import (
    EscalationAlreadyRepliedError,
    EscalationError,
    EscalationNotFoundError,
    JobNotFoundError,
    JobStateError,
    WaitNotFoundError,
)
from envoy_django.models import (
    Escalation,
    EscalationStatus,
    Job,
    JobStatus,
    Wait,
    WaitStatus,
    WaitType,
)
from envoy_django.payloads import check_payload
from envoy_django.registry import get_flow
from envoy_django.scheduler.outcomes import (
    finish_job,
    lock_job,
    lock_with_parent,
    resolve_wait,
    send_on_commit,
)
from envoy_django.scheduler.replies import clean_reply


def schedule(
    name: str,
    input: Any = None,
    *,
    run_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Create a job of the flow registered as ``name``; return its id.

    ``run_at`` delays the start. A second call with the same
    ``idempotency_key`` returns the first job's id and creates nothing.
    """
    flow = get_flow(name)
    check_payload(input, f"input of flow {name!r}")
    if run_at is not None and timezone.is_naive(run_at):
        raise ValueError(f"run_at for flow {name!r} must be timezone-aware, got {run_at!r}")
    if idempotency_key is not None:
        existing = Job.objects.filter(idempotency_key=idempotency_key).values_list("pk", flat=True).first()
        if existing:
            return str(existing)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                flow=name,
                input=input,
                state=flow.start_state,
                max_steps=flow.max_steps,
                run_after=run_at,
                idempotency_key=idempotency_key,
            )
            send_on_commit(signals.job_scheduled, job)
            enqueue_on_commit(job.pk, run_at)
    except IntegrityError:
        if idempotency_key is None:
            raise
        return str(Job.objects.get(idempotency_key=idempotency_key).pk)
    return str(job.pk)


def get_job(job_id: Any) -> Job:
    """The Job row (``.status``, ``.output``, ``.error``, ...)."""
    job = Job.objects.filter(pk=_uuid(job_id, "job")).first()
    if job is None:
        raise JobNotFoundError(f"no job {job_id}")
    return job


def cancel_job(job_id: Any) -> None:
    """Cancel the job and every unfinished job below it."""
    with transaction.atomic():
        job = _lock_unfinished(job_id, "cancel")
        finish_job(job, JobStatus.CANCELLED, error="cancelled")


def fail_job(job_id: Any, reason: str) -> None:
    """Fail the job with ``reason``; its unfinished descendants are cancelled."""
    with transaction.atomic():
        job = _lock_unfinished(job_id, "fail")
        finish_job(job, JobStatus.FAILED, error=str(reason), error_type="FailedByOperator")


def retry_job(job_id: Any) -> None:
    """Re-queue a failed job from its last checkpoint, with a fresh retry budget."""
    with transaction.atomic():
        job = lock_job(_uuid(job_id, "job"))
        if job is None:
            raise JobNotFoundError(f"no job {job_id}")
        if job.status != JobStatus.FAILED:
            raise JobStateError(f"job {job.pk} is {job.status}; only failed jobs can be retried")
        if job.context and job.context.get("done"):
            raise JobStateError(
                f"job {job.pk} ended in its flow ({job.context['done']}: {job.error}); "
                "schedule a new job instead"
            )
        now = timezone.now()
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.PENDING, attempts=0, error="", error_type="", traceback="",
            finished_at=None, run_after=None, updated_at=now,
        )
        enqueue_on_commit(job.pk)


def resolve_blocking_job(job_id: Any, wait_id: str, value: Any = None) -> None:
    """Resolve an outside-event wait (``ctx.wait_for``); the job resumes when none remain."""
    check_payload(value, f"value for wait {wait_id!r} of job {job_id}")
    with transaction.atomic():
        job = lock_job(_uuid(job_id, "job"))
        if job is None:
            raise JobNotFoundError(f"no job {job_id}")
        wait = Wait.objects.select_for_update().filter(job_id=job.pk, wait_id=wait_id).first()
        if wait is None:
            raise WaitNotFoundError(f"job {job.pk} has no wait {wait_id!r}")
        if wait.type != WaitType.EVENT:
            how = "reply_to_escalation()" if wait.type == WaitType.ESCALATION else "the child job ending"
            raise JobStateError(f"wait {wait_id!r} of job {job.pk} is a {wait.type} wait; it resolves by {how}")
        if wait.status != WaitStatus.PENDING:
            raise JobStateError(f"wait {wait_id!r} of job {job.pk} is already {wait.status}")
        resolve_wait(job, wait, WaitStatus.RESOLVED, value=value)


def reply_to_escalation(escalation_id: Any, values: dict | None, status: str, *, user: Any = None) -> None:
    """Approve or reject an escalation with values for its inputs.

    ``user`` is a Django user or a username. A rejection fails the job,
    unless the state escalated with ``on_reject="continue"``.
    """
    if status not in (EscalationStatus.APPROVED, EscalationStatus.REJECTED):
        raise EscalationError(
            f"reply to escalation {escalation_id}: status must be 'approved' or 'rejected', got {status!r}"
        )
    pk = _uuid(escalation_id, "escalation")
    job_id = Escalation.objects.filter(pk=pk).values_list("job_id", flat=True).first()
    if job_id is None:
        raise EscalationNotFoundError(f"no escalation {escalation_id}")
    with transaction.atomic():
        job = lock_with_parent(job_id)
        escalation = Escalation.objects.select_for_update().get(pk=pk)
        if escalation.status != EscalationStatus.PENDING:
            who = f" by {escalation.replied_by_username}" if escalation.replied_by_username else ""
            raise EscalationAlreadyRepliedError(f"escalation {escalation.pk} was already {escalation.status}{who}")
        cleaned = clean_reply(escalation.pk, escalation.inputs, values)
        check_payload(cleaned, f"reply to escalation {escalation.pk}")
        username = getattr(user, "get_username", lambda: user)() if user is not None else ""
        now = timezone.now()
        escalation.status = status
        escalation.response = cleaned
        escalation.replied_by = user if hasattr(user, "get_username") else None
        escalation.replied_by_username = str(username or "")
        escalation.replied_at = now
        escalation.updated_at = now
        escalation.save()
        # Before the resumed job is enqueued, so receivers hear of the reply first.
        send_on_commit(signals.escalation_replied, job, escalation=escalation)
        wait = Wait.objects.select_for_update().get(job_id=job.pk, wait_id=escalation.wait_id)
        fails_job = status == EscalationStatus.REJECTED and escalation.on_reject == "fail"
        resolve_wait(job, wait, status, value=cleaned, resume=not fails_job)
        if fails_job and not job.is_finished:
            comments = [cleaned[i["id"]] for i in escalation.inputs if i["type"] == "comment" and cleaned[i["id"]]]
            reason = f"escalation rejected by {username or 'unknown'}" + (f": {'; '.join(comments)}" if comments else "")
            finish_job(job, JobStatus.FAILED, error=reason, error_type="EscalationRejected")


def list_blocking_jobs(*, limit: int | None = None) -> list[dict[str, Any]]:
    """``[{"job_id", "flow", "state", "waits": [{"id", "type", "status"}]}]``, JSON-ready.

    Longest-blocked first; ``limit`` caps the number of jobs. One query over
    the pending waits, since a blocking job always has at least one.
    """
    rows = (
        Wait.objects.filter(status=WaitStatus.PENDING, job__status=JobStatus.BLOCKING)
        .order_by("job__updated_at", "job_id", "id")
        .values_list("job_id", "job__flow", "job__state", "wait_id", "type", "status")
    )
    jobs: dict[Any, dict[str, Any]] = {}
    for job_id, flow, state, wait_id, kind, status in rows.iterator(chunk_size=2000):
        job = jobs.get(job_id)
        if job is None:
            if limit is not None and len(jobs) >= limit:
                break
            job = jobs[job_id] = {"job_id": str(job_id), "flow": flow, "state": state, "waits": []}
        job["waits"].append({"id": wait_id, "type": kind, "status": status})
    return list(jobs.values())


def _uuid(value: Any, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        error = EscalationNotFoundError if what == "escalation" else JobNotFoundError
        raise error(f"no {what} {value!r} (not a valid id)") from None


def _lock_unfinished(job_id: Any, verb: str) -> Job:
    job = lock_with_parent(_uuid(job_id, "job"))
    if job is None:
        raise JobNotFoundError(f"no job {job_id}")
    if job.is_finished:
        raise JobStateError(f"job {job.pk} is already {job.status}; nothing to {verb}")
    return job
