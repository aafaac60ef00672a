"""Cron schedules: one job per tick, ever; once after downtime; bad expressions refused by name."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.exceptions import InvalidArgumentError, PayloadError, UnknownFlowError
from envoy_django.models import Job, Schedule
from envoy_django.scheduler.retention import purge_finished

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC


def _at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def _due(name: str, when: dt.datetime) -> None:
    Schedule.objects.filter(name=name).update(next_run_at=when)


def test_a_due_schedule_makes_one_job_and_moves_to_its_next_tick():
    scheduler.add_schedule("hourly", "hello", "0 * * * *", input="cron")
    _due("hourly", _at(2026, 3, 1, 10))
    (job_id,) = scheduler.run_due_schedules(now=_at(2026, 3, 1, 10, 0, 30))
    assert scheduler.get_job(job_id).output == "Hello cron! Bye!"  # immediate mode ran it
    schedule = Schedule.objects.get(name="hourly")
    assert (schedule.last_run_at, schedule.next_run_at, str(schedule.last_job_id)) == (
        _at(2026, 3, 1, 10), _at(2026, 3, 1, 11), job_id)
    assert scheduler.run_due_schedules(now=_at(2026, 3, 1, 10, 59)) == []  # not due again before 11:00


def test_after_downtime_a_schedule_runs_once_not_once_per_missed_tick():
    scheduler.add_schedule("every5", "hello", "*/5 * * * *")
    _due("every5", _at(2026, 3, 1, 10))
    assert len(scheduler.run_due_schedules(now=_at(2026, 3, 1, 13, 2))) == 1  # 37 ticks missed
    assert Schedule.objects.get(name="every5").next_run_at == _at(2026, 3, 1, 13, 5)
    assert Job.objects.count() == 1


def test_a_tick_never_gets_a_second_job_even_if_the_schedule_did_not_move_on():
    """A crash between the job and the schedule's update, or a second sweeper with stale rows: the key holds."""
    scheduler.add_schedule("daily", "hello", "0 6 * * *")
    _due("daily", _at(2026, 3, 1, 6))
    (first,) = scheduler.run_due_schedules(now=_at(2026, 3, 1, 6, 1))
    _due("daily", _at(2026, 3, 1, 6))  # as if that update had been lost
    assert scheduler.run_due_schedules(now=_at(2026, 3, 1, 6, 2)) == []
    schedule = Schedule.objects.get(name="daily")
    assert (str(schedule.last_job_id), schedule.next_run_at) == (first, _at(2026, 3, 2, 6))
    assert Job.objects.count() == 1


@pytest.mark.services  # row locks: PostgreSQL's
def test_two_sweepers_at_once_make_one_job_per_tick():
    from tests.support import in_threads

    for i in range(5):
        scheduler.add_schedule(f"s{i}", "hello", "*/10 * * * *")
    Schedule.objects.update(next_run_at=_at(2026, 3, 1, 10))
    now = _at(2026, 3, 1, 10, 1)
    made = in_threads(*[lambda: scheduler.run_due_schedules(now=now)] * 4)
    made_ids = sorted(job for jobs in made for job in jobs)
    assert made_ids == sorted(str(pk) for pk in Job.objects.values_list("pk", flat=True))
    assert Job.objects.count() == 5


def test_the_cron_runs_in_the_schedules_time_zone():
    from zoneinfo import ZoneInfo

    from envoy_django.scheduler.schedules import next_tick

    row = scheduler.add_schedule("morning", "hello", "0 9 * * *", timezone="Europe/Amsterdam")
    assert row.next_run_at > timezone.now()
    assert row.next_run_at.astimezone(ZoneInfo("Europe/Amsterdam")).hour == 9
    assert next_tick(row.cron, row.timezone, _at(2026, 1, 5, 10)) == _at(2026, 1, 6, 8)  # winter: UTC+1
    assert next_tick(row.cron, row.timezone, _at(2026, 7, 5, 10)) == _at(2026, 7, 6, 7)  # summer: UTC+2


def test_adding_again_updates_the_same_schedule_and_pausing_stops_it():
    scheduler.add_schedule("report", "hello", "0 6 * * *", input=1)
    kept = Schedule.objects.get(name="report").next_run_at
    scheduler.add_schedule("report", "hello", "0 6 * * *", input=2)  # same timing: the next run stays
    assert (Schedule.objects.count(), Schedule.objects.get(name="report").input) == (1, 2)
    assert Schedule.objects.get(name="report").next_run_at == kept
    scheduler.add_schedule("report", "hello", "0 6 * * *", enabled=False)
    assert Schedule.objects.get(name="report").next_run_at is None
    Schedule.objects.filter(name="report").update(next_run_at=_at(2026, 1, 1))  # even if it looked due
    assert scheduler.run_due_schedules(now=_at(2026, 1, 2)) == []  # paused
    assert scheduler.remove_schedule("report") is True
    assert scheduler.remove_schedule("report") is False


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "names"),
    [
        (("r", "hello", "61 * * * *"), {}, InvalidArgumentError, "schedule 'r': invalid cron expression '61 * * * *'"),
        (("r", "hello", "every day"), {}, InvalidArgumentError, "schedule 'r': invalid cron expression 'every day'"),
        (("r", "hello", "0 6 * * *"), {"timezone": "Mars/Olympus"}, InvalidArgumentError,
         "schedule 'r': unknown timezone 'Mars/Olympus'"),
        (("r", "nope", "0 6 * * *"), {}, UnknownFlowError, "schedule 'r': no flow is registered as 'nope'"),
        (("r", "hello", "0 6 * * *"), {"input": {"x": object()}}, PayloadError, "input of schedule 'r'"),
        (("", "hello", "0 6 * * *"), {}, InvalidArgumentError, "schedule name must be a non-empty string"),
        (("r", "hello", "0 6 * * *"), {"enabled": "yes"}, InvalidArgumentError, "schedule 'r': enabled must be"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field_and_change_no_row(args, kwargs, error, names, unchanged):
    with unchanged(), pytest.raises(error) as raised:
        scheduler.add_schedule(*args, **kwargs)
    assert names in str(raised.value)
    assert not Schedule.objects.exists()


def test_a_schedule_whose_flow_was_removed_logs_and_moves_on(caplog):
    scheduler.add_schedule("orphan", "hello", "0 * * * *")
    Schedule.objects.filter(name="orphan").update(flow="gone", next_run_at=_at(2026, 3, 1, 10))
    assert scheduler.run_due_schedules(now=_at(2026, 3, 1, 10, 1)) == []
    assert "schedule 'orphan': no job for the tick" in caplog.text
    assert Schedule.objects.get(name="orphan").next_run_at == _at(2026, 3, 1, 11)


def test_the_sweep_runs_due_schedules():
    from envoy_django.sweeper import sweep_once

    scheduler.add_schedule("minutely", "hello", "* * * * *", input="sweep")
    _due("minutely", timezone.now() - dt.timedelta(seconds=1))
    assert sweep_once()["scheduled"] == 1
    assert Job.objects.get().output == "Hello sweep! Bye!"


def test_purging_a_schedules_last_job_keeps_the_schedule():
    scheduler.add_schedule("old", "hello", "0 * * * *")
    _due("old", _at(2026, 3, 1, 10))
    (job_id,) = scheduler.run_due_schedules(now=_at(2026, 3, 1, 10, 1))
    Job.objects.filter(pk=job_id).update(created_at=_at(2025, 1, 1), finished_at=_at(2025, 1, 1))
    assert purge_finished("30d").jobs == 1
    assert Schedule.objects.get(name="old").last_job_id is None


@pytest.mark.services  # two transactions at once: PostgreSQL's
def test_two_callers_adding_the_same_schedule_leave_one_row():
    from tests.support import in_threads

    in_threads(*[lambda i=i: scheduler.add_schedule("same", "hello", f"{i} * * * *") for i in range(4)])
    assert Schedule.objects.filter(name="same").count() == 1


def test_a_failure_between_the_job_and_the_schedules_update_leaves_neither(monkeypatch):
    """Dying mid-way rolls both back: the next run makes the job, once."""
    scheduler.add_schedule("fragile", "hello", "0 * * * *")
    _due("fragile", _at(2026, 3, 1, 10))

    def dies(*args, **kwargs):
        raise RuntimeError("killed between the job and the schedule's update")

    with monkeypatch.context() as patched:
        patched.setattr(Schedule, "save", dies)
        with pytest.raises(RuntimeError):
            scheduler.run_due_schedules(now=_at(2026, 3, 1, 10, 1))
    assert not Job.objects.exists()
    assert Schedule.objects.get(name="fragile").next_run_at == _at(2026, 3, 1, 10)
    assert len(scheduler.run_due_schedules(now=_at(2026, 3, 1, 10, 2))) == 1
