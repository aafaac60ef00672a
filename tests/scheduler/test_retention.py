"""Retention: old finished jobs go with their history; nothing a live flow may still read ever does."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.exceptions import InvalidArgumentError
from envoy_django.models import Escalation, Job, Step, Wait
from envoy_django.scheduler.retention import parse_age, purge_finished

pytestmark = pytest.mark.django_db(transaction=True)

LONG_AGO = timezone.now() - dt.timedelta(days=90)


def _age(*job_ids: str, when: dt.datetime = LONG_AGO) -> None:
    """Make jobs (and their descendants' rows too, if listed) look created and finished ``when``."""
    Job.objects.filter(pk__in=job_ids).update(created_at=when, finished_at=when)


def _family(parent_flow: str = "parent_of_waiting_child") -> tuple[str, str]:
    """A parent blocking on a child that waits for an event: (parent id, child id), both unfinished."""
    parent = scheduler.schedule(parent_flow)
    child = str(Job.objects.get(parent_id=parent).pk)
    return parent, child


def test_old_finished_jobs_go_with_their_steps_waits_and_escalations():
    done = scheduler.schedule("hello", "old")
    asked = scheduler.schedule("ask")  # blocking on alice
    escalation = Escalation.objects.get(job_id=asked)
    scheduler.reply_to_escalation(escalation.pk, {"reason": "b"}, "rejected", user="alice")  # fails the job
    recent = scheduler.schedule("hello", "recent")
    _age(done, asked)
    assert Step.objects.filter(job_id__in=[done, asked]).exists() and Wait.objects.filter(job_id=asked).exists()

    purged = purge_finished("30d")

    assert purged.jobs == 2
    assert list(Job.objects.values_list("pk", flat=True)) == [Job._meta.pk.to_python(recent)]
    assert not Step.objects.exclude(job_id=recent).exists()
    assert not Wait.objects.exists() and not Escalation.objects.exists()


def test_unfinished_jobs_and_their_families_stay():
    pending = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(days=1))
    parent, child = _family()
    Job.objects.filter(pk__in=[pending, parent, child]).update(created_at=LONG_AGO)
    # A parent marked finished long ago while its child still waits (it cannot happen through the API,
    # a finished parent cancels what is below it; retention must not rely on that):
    Job.objects.filter(pk=parent).update(status="done", finished_at=LONG_AGO)
    assert purge_finished("30d").jobs == 0
    assert Job.objects.count() == 3
    # ...and a finished child of an unfinished parent stays too.
    Job.objects.filter(pk=parent).update(status="blocking", finished_at=None)
    Job.objects.filter(pk=child).update(status="done", finished_at=LONG_AGO)
    assert purge_finished("30d").jobs == 0
    assert Job.objects.count() == 3


def test_a_finished_family_goes_whole_and_a_kept_parent_keeps_its_wait():
    parent, child = _family()
    scheduler.cancel_job(parent)  # cancels the child too
    _age(parent)  # the child is recent: it goes with its parent all the same
    assert purge_finished("30d").jobs == 2
    assert not Job.objects.exists()

    parent, child = _family()
    scheduler.cancel_job(parent)
    _age(child)  # only the child is old: it goes on its own; the parent keeps the outcome of its wait
    assert purge_finished("30d").jobs == 1
    wait = Wait.objects.get(job_id=parent)
    assert (wait.child_id, wait.status) == (None, "cancelled")


def test_a_dry_run_counts_what_would_go_and_deletes_nothing(unchanged):
    ids = [scheduler.schedule("hello", i) for i in range(5)]
    _age(*ids)
    with unchanged():
        assert purge_finished("30d", dry_run=True, batch=2).jobs == 5
    assert purge_finished("30d", batch=2).jobs == 5  # three batches
    assert not Job.objects.exists()


def test_status_and_flow_narrow_what_goes():
    done = scheduler.schedule("hello")
    failed = scheduler.schedule("bad_return")
    child = scheduler.schedule("child", 2)
    _age(done, failed, child)
    assert purge_finished("30d", statuses=["failed"]).jobs == 1
    assert purge_finished("30d", flow="child").jobs == 1
    assert list(Job.objects.values_list("flow", flat=True)) == ["hello"]


@pytest.mark.parametrize(("value", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)])
def test_ages_are_read_as_written(value, seconds):
    assert parse_age(value) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["30", "-1d", "0d", "1y", "", None, 30, "30 days"])
def test_a_bad_age_is_refused_naming_it(value, unchanged):
    with unchanged(), pytest.raises(InvalidArgumentError, match="older_than must be a positive age"):
        purge_finished(value)


def test_a_bad_status_is_refused(unchanged):
    with unchanged(), pytest.raises(InvalidArgumentError, match="statuses must be some of done, failed, cancelled"):
        purge_finished("1d", statuses=["running"])


def test_the_command_deletes_and_reports():
    ids = [scheduler.schedule("hello", i) for i in range(3)]
    _age(*ids)
    out = StringIO()
    call_command("envoy_purge", "--older-than", "30d", "--dry-run", stdout=out)
    assert "would delete 3 job(s)" in out.getvalue() and Job.objects.count() == 3
    call_command("envoy_purge", "--older-than", "30d", "--batch", "2", stdout=out)
    assert "deleted 3 job(s)" in out.getvalue() and not Job.objects.exists()
    with pytest.raises(CommandError, match="older_than must be a positive age.*'soon'"):
        call_command("envoy_purge", "--older-than", "soon")
    with pytest.raises(CommandError, match="statuses must be some of"):
        call_command("envoy_purge", "--older-than", "1d", "--status", "done,pending")


def test_the_sweep_purges_a_batch_when_retention_is_set():
    from envoy_django.sweeper import sweep_once

    ids = [scheduler.schedule("hello", i) for i in range(3)]
    _age(*ids)
    assert "purged" not in sweep_once()  # keep forever by default
    assert Job.objects.count() == 3
    with override_settings(ENVOY={"RETENTION": "30d"}):
        assert sweep_once()["purged"] == 3
    assert not Job.objects.exists()


def test_the_system_check_refuses_a_bad_retention():
    from envoy_django.checks import check_envoy_settings

    with override_settings(ENVOY={"RETENTION": "a month"}):
        errors = check_envoy_settings()
    assert [e.id for e in errors] == ["envoy_django.E008"]
    assert "ENVOY['RETENTION'] must be a positive age" in errors[0].msg


@pytest.mark.services  # row locks: PostgreSQL's
def test_a_job_another_transaction_holds_is_skipped_not_waited_for():
    import threading

    from django.db import connection, transaction

    held, free = scheduler.schedule("hello", "held"), scheduler.schedule("hello", "free")
    _age(held, free)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Job.objects.select_for_update().get(pk=held)  # an operator's retry, say
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(30)
        purged = purge_finished("30d")
        assert (purged.jobs, list(Job.objects.values_list("pk", flat=True))) == (1, [Job._meta.pk.to_python(held)])
    finally:
        release.set()
        thread.join(30)
    assert purge_finished("30d").jobs == 1  # the next run takes it


def test_a_purge_that_dies_mid_batch_deletes_nothing_of_it(monkeypatch):
    parent, child = _family()
    scheduler.cancel_job(parent)
    _age(parent)

    def dies(*args, **kwargs):
        raise RuntimeError("killed after the steps went")

    with monkeypatch.context() as patched:
        patched.setattr(Escalation.objects, "filter", dies)  # the second delete of the batch
        with pytest.raises(RuntimeError):
            purge_finished("30d")
    assert Job.objects.count() == 2 and Step.objects.filter(job_id__in=[parent, child]).exists()
    assert purge_finished("30d").jobs == 2
