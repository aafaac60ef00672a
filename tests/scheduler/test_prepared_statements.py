"""The engine's statements run prepared on PostgreSQL; the site's own queries are left as Django runs them.

Each test starts on a new database session (``fresh_session``), so what
``pg_prepared_statements`` lists is what that test's work prepared.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from envoy_django import scheduler
from envoy_django.models import Job, Step
from envoy_django.scheduler import prepared as prepared_statements

# PostgreSQL's: SQLite has no prepared statements to list.
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fresh_session():
    connection.close()  # the next query opens a new session, with no statement prepared yet
    yield
    connection.close()


ENGINE = {"INSERT INTO", "WITH claimable", "WITH fenced"}  # a job's INSERT, its claim, its checkpoints


def prepared() -> tuple[Counter[str], Counter[str]]:
    """This session's prepared statements by their first two words: how many, and how often they ran.

    PostgreSQL counts a run as the plan it used, custom or generic: exact for
    the first five runs of a statement, which use custom plans.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        rows = [(" ".join(sql.split(" ", 2)[:2]), count) for sql, count in cursor.fetchall()]
    statements: Counter[str] = Counter(kind for kind, _ in rows)
    runs: Counter[str] = Counter()
    for kind, count in rows:
        runs[kind] += count
    return statements, runs


def test_a_statement_the_engine_sends_again_is_prepared_and_stays_prepared():
    first = scheduler.schedule("ten_states")
    # The checkpoint of the states before the last, sent once per state: prepared at its second run.
    assert prepared()[0] == Counter({"WITH fenced": 1})

    second = scheduler.schedule("ten_states")
    after_two, _ = prepared()
    third = scheduler.schedule("ten_states")
    after_three, runs = prepared()

    assert [scheduler.get_job(job_id).status for job_id in (first, second, third)] == ["done"] * 3
    assert set(after_three) == ENGINE
    assert after_three == after_two  # the third job ran on what the first two prepared
    assert runs["WITH claimable"] == runs["INSERT INTO"] == 2  # every run but each one's first


def test_a_connection_that_sends_a_statement_once_prepares_nothing():
    # A web request on Django's default CONN_MAX_AGE = 0 schedules on a connection of its own, and
    # a one-state job on a worker with it runs on one: preparing would only add a round trip.
    job_id = scheduler.schedule("child", 2)

    assert scheduler.get_job(job_id).output == 4
    assert prepared()[0] == Counter()


def test_the_sites_own_queries_are_not_prepared_however_often_they_run():
    scheduler.schedule("ten_states")
    scheduler.schedule("ten_states")
    for _ in range(10):  # past psycopg's usual threshold of five runs
        assert Job.objects.filter(status="done").count() == 2

    assert set(prepared()[0]) == ENGINE


def test_the_query_log_shows_a_prepared_statement_with_its_values():
    with CaptureQueriesContext(connection) as queries:
        job_id = scheduler.schedule("ten_states")

    insert = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT"))
    assert uuid.UUID(job_id).hex in insert and "%s" not in insert


def test_prepared_statements_false_runs_the_engine_on_djangos_own_cursor():
    with override_settings(ENVOY={"PREPARED_STATEMENTS": False}):
        job_id = scheduler.schedule("ten_states")

    assert scheduler.get_job(job_id).status == "done"
    assert prepared()[0] == Counter()


def test_a_transaction_pooler_named_in_the_database_settings_turns_preparing_off_unless_asked(monkeypatch):
    # Django asks sites behind a transaction-pooling PgBouncer for DISABLE_SERVER_SIDE_CURSORS.
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    scheduler.schedule("ten_states")
    assert prepared()[0] == Counter()

    with override_settings(ENVOY={"PREPARED_STATEMENTS": True}):  # a PgBouncer that keeps prepared statements
        scheduler.schedule("ten_states")
    assert prepared()[0] == Counter({"WITH fenced": 1})


def test_a_new_session_prepares_again_and_a_rolled_back_transaction_loses_no_job():
    scheduler.schedule("ten_states")
    connection.close()  # as a worker's connection does when the database restarts or CONN_MAX_AGE ends it
    scheduler.schedule("ten_states")  # on a new session, which prepares again what it sends again

    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.schedule("ten_states")  # its INSERT, prepared in a transaction that then rolls back
        raise RuntimeError("the caller's own failure")
    job_id = scheduler.schedule("ten_states")

    assert scheduler.get_job(job_id).status == "done"
    assert list(Job.objects.values_list("status", flat=True)) == ["done"] * 3
    # The rollback dropped what the session had prepared; the last job prepared each statement anew.
    statements, runs = prepared()
    assert set(statements) == ENGINE
    assert runs["WITH claimable"] == runs["INSERT INTO"] == 1


def lose_prepared_statements() -> None:
    """What a transaction-pooling PgBouncer does to a session's statements, unknown to psycopg: drop them."""
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")


@pytest.fixture
def preparing(monkeypatch):
    """This process still prepares (a test that makes it stop is undone after it)."""
    monkeypatch.setattr(prepared_statements, "_unkept", False)


def test_a_statement_the_database_lost_is_sent_again_unprepared_and_preparing_stops(preparing, caplog):
    scheduler.schedule("ten_states")
    scheduler.schedule("ten_states")  # the INSERT, the claim and the checkpoints are prepared now
    lose_prepared_statements()

    job_id = scheduler.schedule("ten_states")  # each of its statements names one the session lost

    assert scheduler.get_job(job_id).status == "done"
    assert Step.objects.filter(job_id=job_id).count() == 10
    assert "did not keep the engine's prepared statements" in caplog.text
    scheduler.schedule("ten_states")
    assert prepared()[0] == Counter()  # nothing prepared since


def test_a_statement_lost_inside_a_transaction_fails_it_whole_and_the_next_call_runs(preparing):
    scheduler.schedule("ten_states")
    scheduler.schedule("ten_states")
    lose_prepared_statements()

    with pytest.raises(DatabaseError, match="does not exist"), transaction.atomic():
        scheduler.schedule("ten_states")  # inside the caller's transaction: not sent again on its own
    assert Job.objects.count() == 2  # the failed call left nothing behind

    job_id = scheduler.schedule("ten_states")
    assert scheduler.get_job(job_id).status == "done"
