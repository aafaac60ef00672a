"""The engine's statements run prepared on PostgreSQL; the site's own queries are left as Django runs them.

Each test starts on a new database session (``fresh_session``), so what
``pg_prepared_statements`` lists is what that test's work prepared.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from envoy_django import scheduler
from envoy_django.models import Job

# PostgreSQL's: SQLite has no prepared statements to list.
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fresh_session():
    connection.close()  # the next query opens a new session, with no statement prepared yet
    yield
    connection.close()


ENGINE = {"INSERT INTO", "WITH claimable", "WITH fenced"}  # a job's INSERT, its claim, its checkpoints


def prepared() -> tuple[int, Counter[str]]:
    """This session's prepared statements: how many, and how often they ran, by their first two words."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        rows = cursor.fetchall()
    runs: Counter[str] = Counter()
    for sql, count in rows:
        runs[" ".join(sql.split(" ", 2)[:2])] += count
    return len(rows), runs


def test_the_engine_prepares_each_statement_once_and_runs_it_again_and_again():
    first = scheduler.schedule("ten_states")
    after_one, _ = prepared()
    second = scheduler.schedule("ten_states")
    after_two, runs = prepared()

    assert [scheduler.get_job(job_id).status for job_id in (first, second)] == ["done", "done"]
    assert set(runs) == ENGINE
    assert after_two == after_one  # the second job ran on what the first prepared
    assert runs["WITH fenced"] == 20  # ten transitions each
    assert runs["WITH claimable"] == runs["INSERT INTO"] == 2


def test_the_sites_own_queries_are_not_prepared_however_often_they_run():
    scheduler.schedule("ten_states")
    for _ in range(10):  # past psycopg's usual threshold of five runs
        assert Job.objects.filter(status="done").count() == 1

    assert set(prepared()[1]) == ENGINE


def test_the_query_log_shows_a_prepared_statement_with_its_values():
    with CaptureQueriesContext(connection) as queries:
        job_id = scheduler.schedule("ten_states")

    insert = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT"))
    assert uuid.UUID(job_id).hex in insert and "%s" not in insert


def test_prepared_statements_false_runs_the_engine_on_djangos_own_cursor():
    with override_settings(ENVOY={"PREPARED_STATEMENTS": False}):
        job_id = scheduler.schedule("ten_states")

    assert scheduler.get_job(job_id).status == "done"
    assert prepared() == (0, Counter())


def test_a_transaction_pooler_named_in_the_database_settings_turns_preparing_off_unless_asked(monkeypatch):
    # Django asks sites behind a transaction-pooling PgBouncer for DISABLE_SERVER_SIDE_CURSORS.
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    scheduler.schedule("ten_states")
    assert prepared() == (0, Counter())

    with override_settings(ENVOY={"PREPARED_STATEMENTS": True}):  # a PgBouncer that keeps prepared statements
        scheduler.schedule("ten_states")
    assert set(prepared()[1]) == ENGINE


def test_a_new_session_prepares_again_and_a_rolled_back_transaction_loses_no_job():
    scheduler.schedule("ten_states")
    connection.close()  # as a worker's connection does when the database restarts or CONN_MAX_AGE ends it

    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.schedule("ten_states")  # its INSERT prepared in a transaction that then rolls back
        raise RuntimeError("the caller's own failure")
    job_id = scheduler.schedule("ten_states")

    assert scheduler.get_job(job_id).status == "done"
    assert list(Job.objects.values_list("status", flat=True)) == ["done", "done"]
    assert prepared()[1]["WITH fenced"] == 10  # this session's one job, on statements prepared anew
