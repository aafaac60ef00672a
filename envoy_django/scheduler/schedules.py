"""Cron schedules: a job of a flow at every tick of a cron expression, in a time zone.

``add_schedule`` / ``remove_schedule`` keep ``Schedule`` rows; the sweep (in
every execution mode) calls ``run_due_schedules`` every SWEEP_INTERVAL.

- **One job per tick, ever.** The job of a tick carries the idempotency key
  ``envoy-schedule:<schedule id>:<tick>``, and the database refuses a second
  job with that key: two sweepers, a repeated call, or a crash between the
  job and the schedule's update cannot make two.
- **Once after downtime.** A schedule that missed several ticks runs once
  (keyed by the first tick it missed) and then waits for the next tick
  after now, as cron would if it had been down.
- Due schedules are taken with SKIP LOCKED: a sweeper never waits on another.

Expressions are parsed by cronsim (the standard five fields, with the usual
``*/5``, ranges, lists, names and ``L``; daylight-saving gaps and repeats
handled in the schedule's time zone).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Any

from cronsim import CronSim, CronSimError
from django.db import IntegrityError, transaction
from django.utils import timezone as dj_timezone

from envoy_django.exceptions import EnvoyError, InvalidArgumentError
from envoy_django.flow.values import short_repr
from envoy_django.models import Job, Schedule
from envoy_django.payloads import check_name, check_payload
from envoy_django.registry import concurrency_key, get_flow, latest
from envoy_django.scheduler import aftercommit, transitions

log = logging.getLogger("envoy_django.schedules")

BATCH = 100


def next_tick(cron: str, zone: str, after: dt.datetime) -> dt.datetime:
    """The first tick of ``cron`` in ``zone`` strictly after ``after``, in UTC."""
    return next(CronSim(cron, after.astimezone(zoneinfo.ZoneInfo(zone)))).astimezone(dt.UTC)


def check_schedule(name: Any, cron: Any, zone: Any, *, where: str = "") -> None:
    """Raise an EnvoyError naming the schedule and the field if ``cron`` or ``zone`` is not usable."""
    where = where or f"schedule {short_repr(name)}"
    if not isinstance(zone, str) or not zone:
        raise InvalidArgumentError(f"{where}: timezone must be a time zone name such as 'Europe/Amsterdam', "
                                   f"got {short_repr(zone)}")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(f"{where}: unknown timezone {short_repr(zone)}") from None
    if not isinstance(cron, str) or len(cron) > Schedule._meta.get_field("cron").max_length:  # type: ignore[operator]
        raise InvalidArgumentError(f"{where}: cron must be a cron expression string, got {short_repr(cron)}")
    try:
        next_tick(cron, zone, dj_timezone.now())
    except (CronSimError, StopIteration) as exc:
        reason = str(exc) or "it never fires"
        raise InvalidArgumentError(f"{where}: invalid cron expression {short_repr(cron)} ({reason})") from None


def add_schedule(name: str, flow: str, cron: str, *, input: Any = None, timezone: str = "UTC",
                 enabled: bool = True) -> Schedule:
    """Create the schedule ``name``, or update it if it exists; the row.

    The next run is recomputed from now when the cron, the time zone or
    ``enabled`` changes; an unchanged schedule keeps its next run.
    """
    check_name(name, "schedule name", Schedule._meta.get_field("name").max_length)  # type: ignore[arg-type]
    where = f"schedule {name!r}"
    try:
        get_flow(flow)
        check_payload(input, f"input of {where}")
        concurrency_key(flow, input)
    except EnvoyError as exc:
        exc.args = (f"{where}: {exc}",)
        raise
    check_schedule(name, cron, timezone, where=where)
    if not isinstance(enabled, bool):
        raise InvalidArgumentError(f"{where}: enabled must be True or False, got {short_repr(enabled)}")
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                return _upsert(name, flow, cron, input, timezone, enabled)
        except IntegrityError:  # created by another caller meanwhile: update it
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _upsert(name: str, flow: str, cron: str, input: Any, zone: str, enabled: bool) -> Schedule:
    now = dj_timezone.now()
    row = Schedule.objects.select_for_update().filter(name=name).first()
    if row is None:
        return Schedule.objects.create(
            name=name, flow=flow, cron=cron, input=input, timezone=zone, enabled=enabled,
            next_run_at=next_tick(cron, zone, now) if enabled else None, created_at=now, updated_at=now,
        )
    retimed = (row.cron, row.timezone, row.enabled) != (cron, zone, enabled) or (enabled and row.next_run_at is None)
    row.flow, row.cron, row.input, row.timezone, row.enabled, row.updated_at = flow, cron, input, zone, enabled, now
    if retimed:
        row.next_run_at = next_tick(cron, zone, now) if enabled else None
    row.save()
    return row


def remove_schedule(name: str) -> bool:
    """Delete the schedule ``name``; whether there was one. Its jobs stay."""
    deleted, _ = Schedule.objects.filter(name=name).delete()
    return bool(deleted)


def run_due_schedules(now: dt.datetime | None = None) -> list[str]:
    """Create the job of every schedule due at ``now`` (default: now); their ids."""
    now = now or dj_timezone.now()
    created: list[str] = []
    with aftercommit.atomic():
        due = list(
            Schedule.objects.select_for_update(skip_locked=True)
            .filter(enabled=True, next_run_at__lte=now).order_by("next_run_at")[:BATCH]
        )
        for schedule in due:
            job_id = _tick(schedule, now)
            if job_id:
                created.append(job_id)
    return created


def _tick(schedule: Schedule, now: dt.datetime) -> str | None:
    """The job of the schedule's first missed tick (None if it had one already); then on to the next tick after now."""
    tick = schedule.next_run_at
    assert tick is not None
    tick_key = f"envoy-schedule:{schedule.pk}:{tick.isoformat()}"
    job_id = None
    try:
        flow, version = latest(schedule.flow)
        key = concurrency_key(schedule.flow, schedule.input)
    except EnvoyError as exc:
        log.error("schedule %r: no job for the tick at %s: %s", schedule.name, tick.isoformat(), exc)
    else:
        try:
            with transaction.atomic():  # a savepoint: a duplicate key leaves the rest of the batch alone
                job = transitions.create(schedule.flow, flow, schedule.input, version=version,
                                         idempotency_key=tick_key, concurrency_key=key)
            job_id = str(job.pk)
        except IntegrityError:  # that tick has its job already (a crash before the update below, say)
            existing = Job.objects.filter(idempotency_key=tick_key).values_list("pk", flat=True).first()
            schedule.last_job_id = existing
    if job_id:
        schedule.last_job_id = job_id
    schedule.last_run_at = tick
    schedule.next_run_at = next_tick(schedule.cron, schedule.timezone, max(now, tick))
    schedule.updated_at = now
    schedule.save(update_fields=["last_job", "last_run_at", "next_run_at", "updated_at"])
    return job_id
