"""The hot path's writes: as few round trips as the guarantees allow, and the guarantees still hold.

On PostgreSQL outside a transaction, the claim and each ordinary transition
(including the last, when no parent waits) are one statement each, that
PostgreSQL commits on its own. The fence still holds inside that statement:
a transition whose lease was taken meanwhile writes nothing and tells no one.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from envoy_django import StateFlow, register, scheduler, signals
from envoy_django.models import Job, Step
from envoy_django.scheduler import aftercommit, transitions
from envoy_django.scheduler.executor import run_job

pytestmark = pytest.mark.django_db(transaction=True)

_cancel_from_inside: dict[str, str] = {}


def _cancelled_by_an_operator_meanwhile(ctx):
    scheduler.cancel_job(_cancel_from_inside["job"])  # as an operator would, while the state runs
    ctx.output("computed, but nobody may keep it")
    return ctx


register("cancelled_while_running", StateFlow([
    {"name": "Work", "on_state": _cancelled_by_an_operator_meanwhile},
    {"name": "Never", "on_state": lambda ctx: ctx},
]))


def _wait_for_two(ctx):
    ctx.wait_for(["first", "second"])
    return ctx


register("two_events", StateFlow([
    {"name": "Wait", "on_state": _wait_for_two},
    {"name": "Go", "on_state": lambda ctx: ctx.output(ctx.get("waits")) or ctx},
]))


def _due_job(name: str, input=None) -> str:
    """A pending job nobody has run yet (run_at keeps immediate mode from running it at once)."""
    job_id = scheduler.schedule(name, input, run_at=timezone.now() + dt.timedelta(hours=1))
    Job.objects.filter(pk=job_id).update(run_after=timezone.now() - dt.timedelta(seconds=1))
    return job_id


@pytest.fixture
def commits(monkeypatch):
    """How many COMMITs Django sends (an ``atomic()`` block ending); autocommit statements are not counted."""
    counted: list[int] = []
    commit = connection.commit

    def counting():
        counted.append(1)
        return commit()

    monkeypatch.setattr(connection, "commit", counting)
    return counted


@pytest.mark.services  # PostgreSQL's: on SQLite the same writes run in a transaction
def test_the_claim_and_every_ordinary_transition_is_one_statement_and_one_commit(commits):
    job_id = _due_job("ten_states")
    with CaptureQueriesContext(connection) as queries:
        run_job(job_id)
    job = scheduler.get_job(job_id)
    assert (job.status, job.steps.count()) == ("done", 10)
    statements = [q["sql"].split(" ", 2)[:2] for q in queries.captured_queries]
    assert statements == [["WITH", "claimable"]] + [["WITH", "fenced"]] * 10
    assert commits == []  # no transaction opened: each statement committed on its own


@pytest.mark.services  # PostgreSQL's: SQLite takes a statement for the wait and one for the job
def test_a_wait_resolves_and_its_job_resumes_in_one_statement_only_once_no_other_wait_is_pending():
    job_id = scheduler.schedule("two_events")
    assert scheduler.get_job(job_id).status == "blocking"

    def writes(resolve):
        with CaptureQueriesContext(connection) as queries:
            resolve()
        return [q["sql"].split(" ", 4)[:4] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "WITH"))]

    # One of two waits: the statement records it, and the job's condition (another wait pending) holds it.
    assert writes(lambda: scheduler.resolve_blocking_job(job_id, "first", 1)) == [
        ["WITH", "resolved", "AS", "(UPDATE"]]
    job = scheduler.get_job(job_id)
    assert job.status == "blocking"
    assert dict(job.waits.values_list("wait_id", "status")) == {"first": "resolved", "second": "pending"}
    # The last one: the same one statement resumes the job too, and the job runs on (immediate mode).
    assert writes(lambda: scheduler.resolve_blocking_job(job_id, "second", 2))[:2] == [
        ["WITH", "resolved", "AS", "(UPDATE"], ["WITH", "claimable", "AS", "(SELECT"]]
    job = scheduler.get_job(job_id)
    assert job.status == "done"
    assert dict(job.waits.values_list("wait_id", "value")) == {"first": 1, "second": 2}


def _resume_with_results(ctx):
    ctx.output({wait_id: ctx.result(wait_id) for wait_id in ("first", "second")})
    return ctx


register("two_events_then_results", StateFlow([
    {"name": "Wait", "on_state": _wait_for_two},
    {"name": "Results", "on_state": _resume_with_results},
]))


@pytest.mark.services  # PostgreSQL's: elsewhere the runner reads the waits with a query of their own
def test_a_resumed_job_reads_its_ended_waits_in_the_claim_itself():
    job_id = scheduler.schedule("two_events_then_results")
    scheduler.resolve_blocking_job(job_id, "first", {"n": 1})
    with CaptureQueriesContext(connection) as queries:
        scheduler.resolve_blocking_job(job_id, "second", None)  # the last one: the job runs on (immediate mode)
    sent = [q["sql"] for q in queries.captured_queries]
    claim = next(n for n, sql in enumerate(sent) if sql.startswith("WITH claimable"))
    # The claim, then the resumed state's transition: no query for the waits in between.
    assert [sql.split(" ", 2)[:2] for sql in sent[claim:]] == [["WITH", "claimable"], ["WITH", "fenced"]]
    job = scheduler.get_job(job_id)
    assert job.status == "done"
    assert job.output == {"first": {"status": "resolved", "value": {"n": 1}, "error": None},
                          "second": {"status": "resolved", "value": None, "error": None}}


@pytest.mark.services  # PostgreSQL's: SQLite takes a statement for each row
def test_a_reply_is_one_look_two_locks_and_one_write_that_records_it_and_resumes_the_job():
    from envoy_django.models import Escalation

    job_id = scheduler.schedule("ask")
    escalation = Escalation.objects.get(job_id=job_id)
    with CaptureQueriesContext(connection) as queries:
        scheduler.reply_to_escalation(escalation.pk, {"reason": "b"}, "approved", user="alice")
    sent = [q["sql"] for q in queries.captured_queries]
    claim = next(n for n, sql in enumerate(sent) if sql.startswith("WITH claimable"))  # the job runs on here
    kinds = [" ".join(sql.split(" ", 2)[:2]) if sql.startswith("WITH") else sql.split(" ", 1)[0]
             for sql in sent[:claim]]
    # The look before the locks; then, in one transaction, the job's row, the escalation with its
    # wait, and one write for all three.
    assert kinds == ["SELECT", "BEGIN", "SELECT", "SELECT", "WITH also0", "COMMIT"]
    assert sent[2].endswith("FOR UPDATE") and sent[3].endswith("FOR UPDATE")
    escalation.refresh_from_db()
    assert (escalation.status, escalation.response, escalation.replied_by_username) == (
        "approved", {"reason": "b"}, "alice")
    assert escalation.job.waits.get().status == "approved"
    assert scheduler.get_job(job_id).status == "done"


@pytest.mark.services  # PostgreSQL's: on SQLite the same writes run in a transaction
def test_a_transition_that_lost_its_lease_meanwhile_writes_nothing_and_signals_nothing():
    steps_told: list[int] = []
    receiver = lambda sender, job, step, **kwargs: steps_told.append(step.pk)  # noqa: E731
    signals.step_finished.connect(receiver)
    try:
        job_id = _cancel_from_inside["job"] = _due_job("cancelled_while_running")
        run_job(job_id)
    finally:
        signals.step_finished.disconnect(receiver)
    job = scheduler.get_job(job_id)
    assert (job.status, job.state, job.output, job.lease_owner) == ("cancelled", "Work", None, "")
    assert not Step.objects.filter(job_id=job_id).exists()
    assert steps_told == []


def test_the_claim_and_transitions_inside_a_callers_transaction_commit_with_it():
    """Called inside ``atomic()`` (a test, a view with ATOMIC_REQUESTS), nothing is committed on its own."""
    from django.db import transaction

    job_id = _due_job("hello", "inside")
    with pytest.raises(RuntimeError), transaction.atomic():
        run_job(job_id)
        assert scheduler.get_job(job_id).status == "done"
        raise RuntimeError("roll it all back")
    job = scheduler.get_job(job_id)
    assert (job.status, job.steps.count(), job.claims) == ("pending", 0, 0)


def test_a_job_whose_lease_ran_out_is_taken_over_and_finished(caplog):
    job_id = _due_job("hello", "again")
    assert transitions.claim(job_id, "a-worker-that-died") is not None
    Job.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    with caplog.at_level("INFO", logger="envoy_django.executor"):
        run_job(job_id)
    job = scheduler.get_job(job_id)
    assert (job.status, job.output, job.claims) == ("done", "Hello again! Bye!", 0)
    assert "taking over from a-worker-that-died" in caplog.text


def test_a_job_that_is_not_due_or_already_running_is_not_claimed():
    later = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(hours=1))
    assert transitions.claim(later, "w1") is None
    job_id = _due_job("hello")
    assert transitions.claim(job_id, "w1") is not None
    assert transitions.claim(job_id, "w2") is None  # its lease is still good
    job = scheduler.get_job(job_id)
    assert (job.status, job.lease_owner, job.claims) == ("running", "w1", 1)


def test_a_one_statement_block_that_raises_sends_nothing():
    told: list[str] = []
    receiver = lambda sender, job, **kwargs: told.append(job)  # noqa: E731
    signals.job_done.connect(receiver)
    try:
        with pytest.raises(RuntimeError), aftercommit.atomic(one_statement=True):
            aftercommit.send(signals.job_done, "a job")
            aftercommit.enqueue("00000000-0000-0000-0000-000000000000", flow="hello")
            raise RuntimeError("the statement failed")
        with aftercommit.atomic(one_statement=True):
            aftercommit.send(signals.job_done, "the next job")
    finally:
        signals.job_done.disconnect(receiver)
    assert told == ["the next job"]


@pytest.mark.services
def test_the_queue_is_built_once_and_survives_its_redis_connection_being_killed(redis_conn):
    """The Envoy queue keeps its Redis connection pool; a connection Redis dropped is replaced, not fatal."""
    from envoy_django.dispatch.rq_queue import get_queue
    from envoy_django.testing.worker import drain

    with override_settings(ENVOY={"EXECUTION": "rq"}):
        queue = get_queue()
        assert get_queue() is queue
        first = scheduler.schedule("hello", "one")
        pooled = queue.connection.client_id()
        queue.connection.client_kill_filter(_id=pooled)  # this connection only: others share this Redis
        second = scheduler.schedule("hello", "two")
        assert queue.count == 2  # sent at once, not left for the sweep
        drain()
    assert [scheduler.get_job(j).output for j in (first, second)] == ["Hello one! Bye!", "Hello two! Bye!"]


@pytest.mark.services  # PostgreSQL's: SQLite saves the job through the ORM
def test_schedules_insert_stores_every_column_as_save_would():
    """``schedule()`` sends its own INSERT on PostgreSQL: defaults, JSON and dates must come out as save()'s."""
    import uuid

    from envoy_django.scheduler import statements

    now = timezone.now()
    fields = dict(flow="hello", flow_version=2, input={"n": [1, 2.5, None, "é"], "s": "x"}, state="Start",
                  max_steps=7, run_after=now + dt.timedelta(hours=1), concurrency_key="acme",
                  created_at=now, updated_at=now, enqueued_at=now)
    sent, saved = Job(id=uuid.uuid4(), **fields), Job(id=uuid.uuid4(), **fields)
    with connection.cursor() as cursor:
        cursor.execute(*statements.insert_job(sent))
    saved.save(force_insert=True)

    def row(job_id):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {Job._meta.db_table} WHERE id = %s", [job_id])
            names = [column.name for column in cursor.description]
            return {name: value for name, value in zip(names, cursor.fetchone(), strict=True) if name != "id"}

    assert row(sent.pk) == row(saved.pk)
