"""The public scheduler API (the original Envoy's, in snake_case).

Each call is one transaction: it either changes every row it means to, or
raises an error naming the job, wait or input at fault and changes none.
Work it makes runnable is enqueued after commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

from django.db import IntegrityError

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from envoy_django import signals
from envoy_django.exceptions import (
    EnvoyError,
    EscalationAlreadyRepliedError,
    EscalationError,
    EscalationNotFoundError,
    IdempotencyConflictError,
    InvalidArgumentError,
    JobNotFoundError,
    JobStateError,
    WaitNotFoundError,
)
from envoy_django.flow import StateFlow
from envoy_django.flow.context import MAX_USERNAME, MAX_WAIT_ID
from envoy_django.flow.values import find_invalid, json_equal, short_repr
from envoy_django.models import (
    MAX_IDEMPOTENCY_KEY,
    Escalation,
    EscalationStatus,
    Job,
    JobStatus,
    Wait,
    WaitStatus,
    WaitType,
)
from envoy_django.payloads import check_name, check_payload
from envoy_django.registry import concurrency_key, latest
from envoy_django.scheduler import aftercommit, assignees, transitions, waits
from envoy_django.scheduler.replies import check_approval, clean_reply

JobId = uuid.UUID | str  # a job's (or an escalation's) id, as a UUID or its text
ReplyStatus = Literal["approved", "rejected"]
Replier = Union["AbstractBaseUser", str, None]  # a saved user, a username, or nobody in particular


def schedule(
    name: str,
    input: Any = None,
    *,
    run_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Create a job of the flow registered as ``name``; return its id.

    ``run_at`` (a timezone-aware datetime) delays the start. A second call
    with the same ``idempotency_key``, flow and input returns the first
    job's id and creates nothing; the same key with another flow or input
    raises ``IdempotencyConflictError``.
    """
    new = _NewJob.checked(name, input, run_at, idempotency_key)
    if idempotency_key is not None:
        existing = _same_key(idempotency_key, name, input)
        if existing:
            return existing
    try:
        with aftercommit.atomic(one_statement=True):  # the job's INSERT
            job = transitions.create(name, new.flow, input, version=new.version, run_after=new.run_at,
                                     idempotency_key=idempotency_key, concurrency_key=new.concurrency_key)
    except IntegrityError:
        existing = _same_key(idempotency_key, name, input) if idempotency_key is not None else None
        if existing is None:
            raise
        return existing
    return str(job.pk)


ScheduleItem = tuple[str, Any] | tuple[str, Any, Mapping[str, Any]]


def schedule_many(items: Iterable[ScheduleItem]) -> list[str]:
    """Create many jobs in one transaction; return their ids, in the order given.

    Each item is ``(name, input)`` or ``(name, input, {"run_at": ...,
    "idempotency_key": ...})``, meaning what ``schedule()``'s arguments
    mean, idempotency included: an item whose key is taken gets that job's
    id, and so does a key repeated within ``items``. Every item is checked
    before anything is written: a bad one raises an error naming it and
    creates no job. After the commit the new jobs go to the workers in one
    pipelined enqueue.
    """
    new = [_NewJob.from_item(index, item) for index, item in enumerate(items)]
    taken = -1
    while True:
        sources, to_create = _keys_taken(new)
        try:
            with aftercommit.atomic():
                created = transitions.create_many([
                    transitions.NewJob(job.name, job.flow, job.version, job.input, job.run_at, job.idempotency_key,
                                       job.concurrency_key)
                    for job in to_create
                ])
        except IntegrityError:
            # Another caller committed one of these keys meanwhile (PostgreSQL waits for it before
            # refusing ours): look again. Each round sees more keys taken, so this ends.
            now_taken = sum(isinstance(source, str) for source in sources)
            if now_taken <= taken or not any(job.idempotency_key for job in to_create):
                raise
            taken = now_taken
            continue
        return [source if isinstance(source, str) else str(created[source].pk) for source in sources]


@dataclass(frozen=True)
class _NewJob:
    """One job to create, its arguments checked."""

    name: str
    flow: StateFlow
    version: int
    input: Any
    run_at: dt.datetime | None
    idempotency_key: str | None
    concurrency_key: str | None

    @classmethod
    def checked(cls, name: str, input: Any, run_at: Any, idempotency_key: Any) -> _NewJob:
        flow, version = latest(name)
        check_payload(input, f"input of flow {name!r}")
        if run_at is not None:
            run_at = _aware(run_at, f"run_at for flow {name!r}")
        if idempotency_key is not None:
            check_name(idempotency_key, f"idempotency_key for flow {name!r}", MAX_IDEMPOTENCY_KEY)
        return cls(name, flow, version, input, run_at, idempotency_key, concurrency_key(name, input))

    @classmethod
    def from_item(cls, index: int, item: Any) -> _NewJob:
        where = f"schedule_many item {index}"
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise InvalidArgumentError(
                f"{where} must be (name, input) or (name, input, options), got {short_repr(item)}")
        options = item[2] if len(item) == 3 else {}
        if not isinstance(options, Mapping) or set(options) - {"run_at", "idempotency_key"}:
            raise InvalidArgumentError(
                f"{where}: options may hold run_at and idempotency_key only, got {short_repr(options)}")
        try:
            return cls.checked(item[0], item[1], options.get("run_at"), options.get("idempotency_key"))
        except EnvoyError as exc:
            exc.args = (f"{where}: {exc}",)
            raise


def _keys_taken(new: list[_NewJob]) -> tuple[list[str | int], list[_NewJob]]:
    """Where each job's id comes from, and the jobs to create.

    A source is the id of the job already holding the item's key, or the
    index of the job to create: a key repeated within the batch is created
    once, and its repeats share that job under the rule of a taken key (the
    same flow and input, or IdempotencyConflictError). One query finds the
    keys already taken.
    """
    keys = {job.idempotency_key for job in new if job.idempotency_key is not None}
    rows = Job.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", "pk", "flow", "input")
    taken = {key: (str(pk), flow, stored) for key, pk, flow, stored in rows} if keys else {}
    first: dict[str, int] = {}  # key -> its job's index in to_create
    sources: list[str | int] = []
    to_create: list[_NewJob] = []
    for job in new:
        key = job.idempotency_key
        if key is not None and key in taken:
            job_id, flow, stored = taken[key]
            _check_same(key, f"job {job_id}", flow, stored, job.name, job.input, job_id=job_id)
            sources.append(job_id)
        elif key is not None and key in first:
            holder = to_create[first[key]]
            _check_same(key, "an earlier item of this batch", holder.name, holder.input, job.name, job.input)
            sources.append(first[key])
        else:
            if key is not None:
                first[key] = len(to_create)
            sources.append(len(to_create))
            to_create.append(job)
    return sources, to_create


def _same_key(key: str, name: str, input: Any) -> str | None:
    """The id of the job holding ``key``, if any; raise if it was made of another flow or input."""
    found = Job.objects.filter(idempotency_key=key).values_list("pk", "flow", "input").first()
    if found is None:
        return None
    job_id, flow, stored = str(found[0]), found[1], found[2]
    _check_same(key, f"job {job_id}", flow, stored, name, input, job_id=job_id)
    return job_id


def _check_same(key: str, holder: str, flow: str, stored: Any, name: str, input: Any, *,
                job_id: str | None = None) -> None:
    """Raise unless ``holder`` of ``key`` (made of ``flow`` with ``stored`` input) is the job asked for."""
    if flow != name:
        raise IdempotencyConflictError(
            f"idempotency_key {short_repr(key)} belongs to {holder} of flow {flow!r}, not {name!r}",
            job_id=job_id,
        )
    if not json_equal(stored, input):
        raise IdempotencyConflictError(
            f"idempotency_key {short_repr(key)} belongs to {holder} of flow {flow!r}, "
            "which was scheduled with other input",
            job_id=job_id,
        )


def get_job(job_id: JobId) -> Job:
    """The Job row (``.status``, ``.output``, ``.error``, ...)."""
    pk = _uuid(job_id, "job")
    job = Job.objects.filter(pk=pk).first()
    if job is None:
        raise JobNotFoundError(f"no job {pk}")
    return job


def cancel_job(job_id: JobId) -> None:
    """Cancel the job and every unfinished job below it."""
    with aftercommit.atomic():
        job = _lock_unfinished(job_id, "cancel")
        transitions.finish(job, JobStatus.CANCELLED, error="cancelled")


def fail_job(job_id: JobId, reason: str) -> None:
    """Fail the job with ``reason``; its unfinished descendants are cancelled."""
    with aftercommit.atomic():
        job = _lock_unfinished(job_id, "fail")
        transitions.finish(job, JobStatus.FAILED, error=_text(reason, f"reason to fail job {job.pk}"),
                           error_type="FailedByOperator")


def retry_job(job_id: JobId) -> None:
    """Re-queue a failed job from its last checkpoint, with a fresh retry budget."""
    pk = _uuid(job_id, "job")
    with aftercommit.atomic():
        job = transitions.lock_family(pk)
        if job is None:
            raise JobNotFoundError(f"no job {pk}")
        if job.status != JobStatus.FAILED:
            raise JobStateError(f"job {job.pk} is {job.status}; only failed jobs can be retried")
        if job.context and job.context.get("done"):
            raise JobStateError(
                f"job {job.pk} ended in its flow ({job.context['done']}: {short_repr(job.error)}); "
                "schedule a new job instead"
            )
        transitions.retry_failed(job)


def resolve_blocking_job(job_id: JobId, wait_id: str, value: Any = None) -> None:
    """Resolve an outside-event wait (``ctx.wait_for``); the job resumes when none remain."""
    pk = _uuid(job_id, "job")
    if (
        not isinstance(wait_id, str) or not wait_id or len(wait_id) > MAX_WAIT_ID
        or find_invalid(wait_id, text=True)
    ):
        raise WaitNotFoundError(
            f"job {pk} has no wait {short_repr(wait_id)} (wait ids are strings of at most {MAX_WAIT_ID} characters)"
        )
    check_payload(value, f"value for wait {wait_id!r} of job {pk}")
    # Refused before any lock when it can be: the loser of two answers never holds the job back.
    found = waits.peek(pk, wait_id)
    if found:
        _check_event_wait(pk, wait_id, found[0], found[1])
    with aftercommit.atomic():
        job = transitions.lock_family(pk, found[2]) if found else transitions.lock_family(pk)
        if job is None:
            raise JobNotFoundError(f"no job {pk}")
        wait = waits.lock_wait(job.pk, wait_id)
        if wait is None:
            raise WaitNotFoundError(f"job {job.pk} has no wait {wait_id!r}")
        _check_event_wait(pk, wait_id, wait.type, wait.status)
        transitions.resolve_wait(job, wait, WaitStatus.RESOLVED, value=value)


def _check_event_wait(job_id: uuid.UUID, wait_id: str, kind: str, status: str) -> None:
    if kind != WaitType.EVENT:
        how = "reply_to_escalation()" if kind == WaitType.ESCALATION else "the child job ending"
        raise JobStateError(f"wait {wait_id!r} of job {job_id} is a {kind} wait; it resolves by {how}")
    if status != WaitStatus.PENDING:
        raise JobStateError(f"wait {wait_id!r} of job {job_id} is already {status}")


def reply_to_escalation(
    escalation_id: JobId, values: Mapping[str, Any] | None, status: ReplyStatus, *, user: Replier = None
) -> None:
    """Approve or reject an escalation with values for its inputs.

    ``user`` is a saved Django user, a username, or None. A rejection fails
    the job, unless the state escalated with ``on_reject="continue"``.
    """
    if status not in (EscalationStatus.APPROVED, EscalationStatus.REJECTED):
        raise EscalationError(
            f"reply to escalation {short_repr(escalation_id)}: status must be 'approved' or 'rejected', "
            f"got {short_repr(status)}"
        )
    pk = _uuid(escalation_id, "escalation")
    replier, username = _replier(user, pk)
    found = waits.peek_escalation(pk)
    if found is None:
        raise EscalationNotFoundError(f"no escalation {pk}")
    job_id, parent_id, current, replied_by = found
    if current != EscalationStatus.PENDING:
        # Refused before any lock: the loser of two replies never holds the job back.
        raise _already_replied(pk, current, replied_by)
    with aftercommit.atomic():
        job = transitions.lock_family(job_id, parent_id)
        if job is None:  # deleted since the look above
            raise EscalationNotFoundError(f"no escalation {pk}")
        locked = waits.lock_escalation(pk, job.pk)
        if locked is None:  # deleted since the look above
            raise EscalationNotFoundError(f"no escalation {pk}")
        escalation, wait = locked
        if escalation.status != EscalationStatus.PENDING:
            raise _already_replied(pk, escalation.status, escalation.replied_by_username)
        cleaned = clean_reply(escalation.pk, escalation.inputs, values)
        check_payload(cleaned, f"reply to escalation {escalation.pk}")
        check_approval(escalation.pk, escalation.inputs, cleaned, status)
        # Before the job's own signals, so receivers hear of the reply first.
        aftercommit.send(signals.escalation_replied, job, escalation=escalation)
        fails_job = status == "rejected" and escalation.on_reject == "fail"
        # The reply, the wait's outcome and the resume in one statement.
        transitions.resolve_wait(job, wait, status, value=cleaned, resume=not fails_job,
                                 also=[(escalation, waits.reply(status, cleaned, replier, username, timezone.now()))])
        if fails_job and not job.is_finished:
            comments = [cleaned[i["id"]] for i in escalation.inputs if i["type"] == "comment" and cleaned[i["id"]]]
            reason = f"escalation rejected by {username or 'unknown'}"
            if comments:
                reason += f": {'; '.join(comments)}"
            transitions.finish(job, JobStatus.FAILED, error=reason, error_type="EscalationRejected")


def _already_replied(pk: uuid.UUID, status: str, username: str) -> EscalationAlreadyRepliedError:
    who = f" by {username}" if username else ""
    return EscalationAlreadyRepliedError(f"escalation {pk} was already {status}{who}")


def _replier(user: Any, escalation_pk: uuid.UUID) -> tuple[Any, str]:
    """(the user to store, the username) for a reply; raise for anything else than a saved user, a name or None."""
    where = f"reply to escalation {escalation_pk}"
    if user is None:
        return None, ""
    if isinstance(user, str):
        return None, check_name(user, f"{where}: user", MAX_USERNAME, blank=True)
    from django.contrib.auth import get_user_model

    if not isinstance(user, get_user_model()) or user.pk is None:
        raise EscalationError(
            f"{where}: user must be a saved {get_user_model().__name__}, a username or None, "
            f"got {short_repr(user)}"
        )
    return user, check_name(user.get_username(), f"{where}: username", MAX_USERNAME, blank=True)


def list_blocking_jobs(*, limit: int | None = None) -> list[dict[str, Any]]:
    """``[{"job_id", "flow", "state", "waits": [{"id", "type", "status"}]}]``, JSON-ready.

    Longest-blocked first; ``limit`` caps the number of jobs. One query over
    the pending waits, since a blocking job always has at least one.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgumentError(
            f"list_blocking_jobs: limit must be None or an integer >= 0, got {short_repr(limit)}")
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


def _aware(value: Any, what: str) -> dt.datetime:
    """``value`` in UTC, if it is a timezone-aware datetime that UTC (and the database) can hold."""
    if isinstance(value, dt.datetime) and not timezone.is_naive(value):
        try:
            utc = value.astimezone(dt.UTC)
        except OverflowError:
            pass
        else:
            if dt.MINYEAR < utc.year < dt.MAXYEAR:  # a year of room: later arithmetic must not overflow
                return utc
    raise InvalidArgumentError(f"{what} must be a timezone-aware datetime, got {short_repr(value)}")


def list_escalations(
    *, status: str | None = "pending", user: Any = None, group: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Escalations as JSON-ready dicts, longest-waiting first.

    ``status``: one of pending, approved, rejected, cancelled, or None for
    all. ``user`` (a username or a user): the ones asking that person, by
    name or through one of their groups. ``group``: the ones asking that
    group. ``limit`` caps the number returned.
    """
    if status is not None and status not in EscalationStatus.values:
        raise InvalidArgumentError(
            f"list_escalations: status must be one of {', '.join(EscalationStatus.values)} or None, "
            f"got {short_repr(status)}"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgumentError(f"list_escalations: limit must be None or an integer >= 0, got {short_repr(limit)}")
    if group is not None and not isinstance(group, str):
        raise InvalidArgumentError(f"list_escalations: group must be a group name, got {short_repr(group)}")
    rows = Escalation.objects.select_related("job").only(
        "id", "job_id", "job__flow", "job__state", "wait_id", "user", "group", "message", "inputs", "status",
        "response", "replied_by_username", "replied_at", "created_at",
    ).order_by("created_at", "id")
    if status is not None:
        rows = rows.filter(status=status)
    if group is not None:
        rows = rows.filter(group=group)
    if user is not None:
        rows = rows.filter(assignees.assigned_to(_user_object(user)))
    if limit is not None:
        rows = rows[:limit]
    return [
        {
            "escalation_id": str(row.pk), "job_id": str(row.job_id), "flow": row.job.flow, "state": row.job.state,
            "wait_id": row.wait_id, "user": row.user, "group": row.group, "message": row.message,
            "inputs": row.inputs, "status": row.status, "response": row.response,
            "replied_by": row.replied_by_username or None,
            "created_at": row.created_at.isoformat(),
            "replied_at": row.replied_at.isoformat() if row.replied_at else None,
        }
        for row in rows
    ]


def _user_object(user: Any) -> Any:
    """A user object for ``user`` (a username or a user); an unsaved one named so if nobody has that name."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    if isinstance(user, model):
        return user
    if not isinstance(user, str):
        raise InvalidArgumentError(f"list_escalations: user must be a username or a user, got {short_repr(user)}")
    found = model._default_manager.filter(**{model.USERNAME_FIELD: user}).first()
    return found or model(**{model.USERNAME_FIELD: user})


def _text(value: Any, what: str) -> str:
    try:
        return str(value)
    except Exception as exc:
        raise InvalidArgumentError(f"{what} must be text, got {type(value).__name__} ({exc})") from None


def _uuid(value: Any, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        error = EscalationNotFoundError if what == "escalation" else JobNotFoundError
        raise error(f"no {what} {short_repr(value)} (not a valid id)") from None


def _lock_unfinished(job_id: Any, verb: str) -> Job:
    pk = _uuid(job_id, "job")
    job = transitions.lock_family(pk)
    if job is None:
        raise JobNotFoundError(f"no job {pk}")
    if job.is_finished:
        raise JobStateError(f"job {job.pk} is already {job.status}; nothing to {verb}")
    return job
