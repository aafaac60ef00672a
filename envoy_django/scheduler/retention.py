"""Retention: deleting old finished jobs, with their steps, waits and escalations, in short batches.

Rows are kept forever unless a site says otherwise: ``manage.py envoy_purge
--older-than 30d`` deletes once, and ``ENVOY["RETENTION"] = "30d"`` lets
every sweep delete one batch.

What goes, and what never does:

- a job goes when it finished (done, failed or cancelled; ``statuses``
  narrows that) before the cutoff, its parent (if any) is finished too, and
  every job below it is finished: nothing a running flow may still read
  disappears. Its descendants go with it, whatever their age, status or
  flow (a child's row cannot outlive its parent's);
- a finished child of a parent that is kept goes on its own; the parent's
  wait keeps its outcome and loses only the link to the child's row.

Each batch is one short transaction. Candidate rows another transaction
holds (an operator retrying that job, say) are skipped, not waited for; a
descendant held for longer than ``LOCK_WAIT`` stops the run (the next one
goes on). On PostgreSQL an advisory lock lets one process purge at a time.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from envoy_django.exceptions import InvalidArgumentError
from envoy_django.flow.values import short_repr
from envoy_django.models import FINISHED_STATUSES, Escalation, Job, Schedule, Step, Wait
from envoy_django.scheduler.locks import lock_timeout, try_advisory_lock

log = logging.getLogger("envoy_django.retention")

BATCH = 1000
LOCK_WAIT = 2.0  # seconds a batch waits for a descendant's row before giving up
_LOCK_KEY = 0x656E766F7970  # "envoyp"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_age(value: Any, what: str = "age") -> dt.timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or a timedelta; an EnvoyError naming ``what`` otherwise."""
    if isinstance(value, dt.timedelta) and value > dt.timedelta(0):
        return value
    match = _AGE.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) <= 0:
        raise InvalidArgumentError(
            f"{what} must be a positive age such as '30d', '12h', '90m', '45s' or '2w', got {short_repr(value)}")
    return dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])


@dataclass
class Purged:
    """What a purge deleted (or, dry, would delete): jobs in all, and how many of them were roots of the purge."""

    jobs: int = 0
    roots: int = 0
    skipped: int = 0  # candidates kept: something below them is unfinished, or their row was busy

    def add(self, other: Purged) -> None:
        self.jobs += other.jobs
        self.roots += other.roots
        self.skipped += other.skipped


def purge_finished(
    older_than: Any,
    *,
    statuses: list[str] | tuple[str, ...] = FINISHED_STATUSES,
    flow: str | None = None,
    batch: int = BATCH,
    dry_run: bool = False,
    max_batches: int | None = None,
    now: dt.datetime | None = None,
) -> Purged:
    """Delete jobs finished longer than ``older_than`` ago (see the module docstring for which)."""
    age = parse_age(older_than, "older_than")
    unknown = set(statuses) - set(FINISHED_STATUSES)
    if unknown or not statuses:
        raise InvalidArgumentError(
            f"statuses must be some of {', '.join(FINISHED_STATUSES)}, got {short_repr(list(statuses))}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidArgumentError(f"batch must be a positive integer, got {short_repr(batch)}")
    cutoff = (now or timezone.now()) - age
    total = Purged()
    after: Key | None = None
    batches = 0
    while max_batches is None or batches < max_batches:
        done, after = _batch(cutoff, tuple(statuses), flow, batch, after, dry_run)
        batches += 1
        if done is None:  # another process is purging
            break
        total.add(done)
        if after is None:
            break
    if total.jobs and not dry_run:
        log.info("purged %d finished jobs (%d kept: busy or with unfinished jobs below)", total.jobs, total.skipped)
    return total


Key = tuple[dt.datetime, Any]  # (created_at, id) of the last candidate a batch looked at


def _batch(cutoff: dt.datetime, statuses: tuple[str, ...], flow: str | None, size: int, after: Key | None,
           dry_run: bool) -> tuple[Purged | None, Key | None]:
    """One transaction: the next ``size`` candidates after ``after``; what went, and where the next batch starts."""
    with transaction.atomic():
        if not try_advisory_lock(_LOCK_KEY):
            return None, None
        # created_at <= finished_at, so the created_at condition only lets the index do the ordering.
        candidates = Job.objects.filter(
            Q(parent__isnull=True) | Q(parent__status__in=FINISHED_STATUSES),
            status__in=statuses, created_at__lt=cutoff, finished_at__lt=cutoff,
        )
        if flow is not None:
            candidates = candidates.filter(flow=flow)
        if after is not None:
            candidates = candidates.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
        rows = list(
            candidates.order_by("created_at", "pk").select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "created_at")[:size]
        )
        if not rows:
            return Purged(), None
        roots = [pk for pk, _ in rows]
        doomed, kept = _families(roots)
        if not dry_run and doomed:
            _delete(doomed)
        next_after = (rows[-1][1], rows[-1][0]) if len(rows) == size else None
        return Purged(jobs=len(doomed), roots=len(roots) - len(kept), skipped=len(kept)), next_after


def _families(roots: list[Any]) -> tuple[list[Any], set[Any]]:
    """The jobs to delete: each root's family below (locked), unless some job in it is unfinished; and the roots kept.

    A root may sit below another root of the same batch; the family is the
    one of the topmost of them, so a job is never deleted from under a kept one.
    """
    lock_timeout(LOCK_WAIT)
    parent_of: dict[Any, Any] = {}
    unfinished: set[Any] = set()
    seen = set(roots)
    level = list(roots)
    while level:
        children = list(
            Job.objects.filter(parent_id__in=level).select_for_update().order_by("pk")
            .values_list("pk", "parent_id", "status")
        )
        level = []
        for pk, parent_id, status in children:
            parent_of[pk] = parent_id
            if status not in FINISHED_STATUSES:
                unfinished.add(pk)
            if pk not in seen:
                seen.add(pk)
                level.append(pk)

    def top(pk: Any) -> Any:
        while pk in parent_of:
            pk = parent_of[pk]
        return pk

    kept_tops = {top(pk) for pk in unfinished}
    doomed = [pk for pk in seen if top(pk) not in kept_tops]
    return doomed, {root for root in roots if top(root) in kept_tops}


def _delete(doomed: list[Any]) -> None:
    """Delete the jobs and everything that is theirs; waits of jobs that stay lose the link to them."""
    Step.objects.filter(job_id__in=doomed).delete()
    Escalation.objects.filter(job_id__in=doomed).delete()
    Wait.objects.filter(job_id__in=doomed).delete()
    Wait.objects.filter(child_id__in=doomed).update(child=None)
    Schedule.objects.filter(last_job_id__in=doomed).update(last_job=None)
    # The job rows themselves, in one statement: nothing else points at them any more, so
    # Django's collector (which would load every row to cascade in Python) has nothing to do.
    Job.objects.filter(pk__in=doomed)._raw_delete(Job.objects.db)
