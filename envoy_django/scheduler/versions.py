"""Flow versions: which versions jobs are on, and moving unfinished jobs from one version to another.

A job runs to its end on the version it started on (``Job.flow_version``);
a process that lacks that version leaves it alone (``transitions``). These
are the operator's tools around that: ``version_counts`` for
``manage.py envoy_versions`` and the system check, ``migrate_jobs`` for
moving jobs on once the old code is to go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Count

from envoy_django.exceptions import InvalidArgumentError
from envoy_django.flow.values import short_repr
from envoy_django.models import UNFINISHED_STATUSES, Job, JobStatus
from envoy_django.registry import get_flow, versions_of
from envoy_django.scheduler import aftercommit, transitions
from envoy_django.scheduler.api import _uuid as parse_id

IDS_SHOWN = 5


def version_counts() -> dict[str, dict[int, int]]:
    """Flow name -> version -> unfinished jobs on it (versions with none are left out)."""
    rows = (
        Job.objects.filter(status__in=UNFINISHED_STATUSES)
        .values("flow", "flow_version").annotate(n=Count("pk")).order_by("flow", "flow_version")
    )
    counts: dict[str, dict[int, int]] = {}
    for row in rows:
        counts.setdefault(row["flow"], {})[row["flow_version"]] = row["n"]
    return counts


def stranded_versions() -> dict[str, dict[int, int]]:
    """Like ``version_counts``, only the versions this process does not have: jobs that wait for code."""
    return {
        flow: missing
        for flow, counts in version_counts().items()
        if (missing := {v: n for v, n in counts.items() if v not in versions_of(flow)})
    }


def migrate_jobs(
    flow: str,
    from_version: int,
    to_version: int,
    *,
    state_map: Mapping[str, str] | None = None,
    job_ids: Iterable[Any] | None = None,
) -> list[str]:
    """Move the unfinished jobs of ``flow`` on ``from_version`` to ``to_version``; the ids moved.

    Only pending and blocking jobs move (never one a worker is running: run
    this again once it blocks or ends). Each keeps its checkpoint; its state
    is renamed through ``state_map`` (old name -> new name), if given. A
    state the target version lacks, and that the map does not rename, is an
    error naming the state and the jobs in it, and nothing moves.
    ``job_ids`` narrows it to those jobs (the admin's action).
    """
    where = f"migrate_jobs({short_repr(flow)}, {short_repr(from_version)}, {short_repr(to_version)})"
    for name, version in (("from_version", from_version), ("to_version", to_version)):
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgumentError(f"{where}: {name} must be a whole number of at least 1")
    if from_version == to_version:
        raise InvalidArgumentError(f"{where}: from_version and to_version are the same")
    target = get_flow(flow, to_version)
    states = set(target.states)
    mapping = _checked_map(state_map, states, where)
    candidates = Job.objects.filter(flow=flow, flow_version=from_version,
                                    status__in=[JobStatus.PENDING, JobStatus.BLOCKING])
    if job_ids is not None:
        candidates = candidates.filter(pk__in=[parse_id(job_id, "job") for job_id in job_ids])
    with aftercommit.atomic():
        # Busy rows (a claim taking one this instant) are skipped: they are running, not movable.
        jobs = list(candidates.select_for_update(skip_locked=True).order_by("pk"))
        unplaced: dict[str, list[str]] = {}
        for job in jobs:
            if mapping.get(job.state, job.state) not in states:
                unplaced.setdefault(job.state, []).append(str(job.pk))
        if unplaced:
            state, ids = sorted(unplaced.items())[0]
            shown = ", ".join(ids[:IDS_SHOWN]) + (f" and {len(ids) - IDS_SHOWN} more" if len(ids) > IDS_SHOWN else "")
            raise InvalidArgumentError(
                f"{where}: state {state!r} of job(s) {shown} is not in version {to_version} "
                f"(states: {', '.join(sorted(states))}); map it with state_map={{{state!r}: ...}}; nothing moved")
        for job in jobs:
            transitions.move_version(job, to_version, mapping)
    return [str(job.pk) for job in jobs]


def _checked_map(state_map: Mapping[str, str] | None, states: set[str], where: str) -> dict[str, str]:
    if state_map is None:
        return {}
    if not isinstance(state_map, Mapping):
        raise InvalidArgumentError(f"{where}: state_map must map old state names to new ones")
    for old, new in state_map.items():
        if not isinstance(old, str) or not isinstance(new, str):
            raise InvalidArgumentError(f"{where}: state_map must map names to names, got {short_repr(old)}: "
                                       f"{short_repr(new)}")
        if new not in states:
            raise InvalidArgumentError(
                f"{where}: state_map sends {old!r} to {new!r}, which the target version does not have "
                f"(states: {', '.join(sorted(states))})")
    return dict(state_map)

