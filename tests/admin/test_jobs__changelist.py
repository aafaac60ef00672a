"""The job list: columns, filters, search, and staying cheap at scale (no full COUNT, no N+1, no seq scan)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from urllib.parse import parse_qsl

import pytest
from django.contrib.admin import DateFieldListFilter
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from envoy_django import scheduler
from envoy_django.admin.jobs import FlowFilter, JobAdmin
from envoy_django.admin.pagination import EstimatedCountPaginator
from envoy_django.models import Job, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/envoy_django/job/"


def shown(response) -> set[str]:
    return {str(job.pk) for job in response.context["cl"].result_list}


def test_changelist_shows_every_column(superuser_client, jobs_in_each_status):
    response = superuser_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    for status in JobStatus.values:
        assert f'class="envoy-badge envoy-badge--{status}">{status}</span>' in html
    for column in ("id", "flow", "status", "state", "step", "parent", "created", "updated", "duration"):
        assert f">{column.capitalize()}<" in html or f">{column.capitalize()}</a>" in html, column
    assert 'title="at most 25 steps">2</span>' in html  # hello ran two steps: a count, not a bar
    child = Job.objects.get(parent_id=jobs_in_each_status["cancelled"])
    assert f'/admin/envoy_django/job/{jobs_in_each_status["cancelled"]}/change/' in html  # parent link
    assert str(child.pk)[:8] in html


def test_progress_reported_by_the_flow_wins_with_its_message_as_title(superuser_client, evil_job):
    html = superuser_client.get(URL).content.decode()
    assert 'style="width: 50%"' in html and ">50%<" in html
    assert 'title="&lt;script&gt;alert(1)&lt;/script&gt;"' in html


def test_status_filter(superuser_client, jobs_in_each_status):
    for status, job_id in jobs_in_each_status.items():
        ids = shown(superuser_client.get(URL, {"status__exact": status}))
        assert job_id in ids
        assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {status}


def test_flow_filter_lists_registered_flows_without_a_query(superuser_client, jobs_in_each_status):
    with CaptureQueriesContext(connection) as queries:
        response = superuser_client.get(URL)
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]
    flow_spec = next(spec for spec in response.context["cl"].filter_specs if isinstance(spec, FlowFilter))
    assert ("family", "family") in flow_spec.lookup_choices and ("ten_states", "ten_states") in flow_spec.lookup_choices
    ids = shown(superuser_client.get(URL, {"flow": "flaky"}))
    assert ids == {jobs_in_each_status["failed"]}


def date_link(client, title: str) -> str:
    """The query string of the created_at filter's choice ``title``, as the page links it."""
    response = client.get(URL)
    spec = next(spec for spec in response.context["cl"].filter_specs if isinstance(spec, DateFieldListFilter))
    return next(choice["query_string"] for choice in spec.choices(response.context["cl"]) if choice["display"] == title)


def test_date_filter(superuser_client, jobs_in_each_status):
    old = scheduler.schedule("hello", "old")
    Job.objects.filter(pk=old).update(created_at=timezone.now() - dt.timedelta(days=40))
    for title in ("Today", "Past 7 days"):
        ids = shown(superuser_client.get(URL + date_link(superuser_client, title)))
        assert old not in ids and set(jobs_in_each_status.values()) <= ids
    assert old in shown(superuser_client.get(URL + date_link(superuser_client, "Any date")))


def test_children_link_from_the_job_page_filters_by_parent(superuser_client, family):
    job_id, _ = family()
    children = {str(pk) for pk in Job.objects.filter(parent_id=job_id).values_list("pk", flat=True)}
    assert len(children) == 2
    assert shown(superuser_client.get(URL, {"parent": job_id})) == children


def test_search_by_exact_id(superuser_client, jobs_in_each_status):
    job_id = jobs_in_each_status["blocking"]
    assert shown(superuser_client.get(URL, {"q": job_id})) == {job_id}
    assert shown(superuser_client.get(URL, {"q": f"  {job_id.upper()} "})) == {job_id}
    assert shown(superuser_client.get(URL, {"q": str(uuid.uuid4())})) == set()


def test_search_by_flow_name_prefix(superuser_client, jobs_in_each_status):
    ids = shown(superuser_client.get(URL, {"q": "fla"}))
    assert ids == {jobs_in_each_status["failed"]}
    ids = shown(superuser_client.get(URL, {"q": "parent_of"}))
    assert ids == {jobs_in_each_status["cancelled"]}
    assert shown(superuser_client.get(URL, {"q": "laky"})) == set()  # a prefix, not a substring


def test_search_finds_a_retired_flow_by_its_full_name(superuser_client):
    job_id = scheduler.schedule("hello", run_at=timezone.now() + dt.timedelta(days=1))
    Job.objects.filter(pk=job_id).update(flow="retired_flow")
    assert shown(superuser_client.get(URL, {"q": "retired_flow"})) == {job_id}


def test_search_and_filter_queries_use_indexable_lookups(superuser_client):
    with CaptureQueriesContext(connection) as queries:
        superuser_client.get(URL, {"q": "fam"})
        superuser_client.get(URL, {"q": str(uuid.uuid4())})
    sql = " ".join(q["sql"] for q in queries).upper()
    assert " LIKE " not in sql and "UPPER(" not in sql  # no icontains / startswith scans


def _changelist_queries(client, params=None) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, params or {})
    assert response.status_code == 200
    return [q["sql"] for q in queries]


def _make_families(count: int) -> None:
    """``count`` parents, each with one child: 2 * count jobs, half of them with a parent to link."""
    for _ in range(count):
        scheduler.schedule("parent_of_waiting_child")


def test_changelist_queries_are_few_constant_and_never_count_the_whole_table(superuser_client):
    _make_families(3)
    few = _changelist_queries(superuser_client)
    _make_families(22)
    assert Job.objects.count() == 50
    many = _changelist_queries(superuser_client)
    assert len(many) == len(few) <= 6, many  # session, user, bounded count, page: no query per row
    job_queries = [sql for sql in many if "envoy_django_job" in sql]
    counts = [sql for sql in job_queries if "COUNT(" in sql.upper()]
    assert len(counts) == 1
    # The one count reads a LIMITed subquery: at most a bound of rows, never the whole table.
    assert re.search(r"COUNT\(\*\).*FROM \(SELECT .* LIMIT \d+\) subquery", counts[0], re.S | re.I), counts[0]
    # The page itself loads the listed columns only, not checkpoints or payloads.
    page = next(sql for sql in job_queries if sql not in counts)
    assert '"context"' not in page and '"output"' not in page


def test_pages_past_the_exact_bound_are_estimated_or_a_lower_bound(superuser_client, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 3)
    monkeypatch.setattr(JobAdmin, "list_per_page", 2)
    _make_families(5)  # 10 jobs
    response = superuser_client.get(URL)
    paginator = response.context["cl"].paginator
    assert paginator.count_kind in ("estimate", "at least")
    assert paginator.count >= 5
    html = response.content.decode()
    assert re.search(r"(about|at least) \d+ jobs", html)
    seen = set()
    for page in (1, 2, 3, 4, 5):
        ids = shown(superuser_client.get(URL, {"p": page}))
        assert len(ids) == 2 and not ids & seen
        seen |= ids
    last = superuser_client.get(URL, {"p": 5}).context["cl"].paginator
    assert (last.count_kind, last.count) == ("exact", 10)  # the bound covers the whole table here


def test_small_results_are_counted_exactly(superuser_client, jobs_in_each_status):
    response = superuser_client.get(URL)
    assert response.context["cl"].paginator.count_kind == "exact"
    assert re.search(rf"\s{Job.objects.count()} jobs\s", response.content.decode())


def _bulk_jobs(count: int) -> list[str]:
    now = timezone.now()
    flows = ["family", "hello", "child", "flaky", "slow"]
    statuses = JobStatus.values
    jobs = [
        Job(flow=flows[i % len(flows)], status=statuses[i % len(statuses)], state="Start",
            created_at=now - dt.timedelta(seconds=i), updated_at=now)
        for i in range(count)
    ]
    Job.objects.bulk_create(jobs, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE envoy_django_job")
    return [str(job.pk) for job in jobs]


@pytest.mark.services
def test_changelist_queries_use_indexes_on_postgresql(superuser_client):
    assert connection.vendor == "postgresql", "this test needs DATABASE_URL to point at PostgreSQL"
    ids = _bulk_jobs(20_000)
    views = {
        "first page": {},
        "status filter": {"status__exact": "failed"},
        "flow filter": {"flow": "family"},
        "uuid search": {"q": ids[12_345]},
        "flow search": {"q": "fam"},
        "rare flow search": {"q": "ten_"},  # no jobs: LIKE 'ten_%' would scan the table; IN uses the flow index
        "date filter": date_link(superuser_client, "Today"),
        "page 3": {"p": 3},
    }
    for name, params in views.items():
        if isinstance(params, str):
            params = dict(parse_qsl(params.lstrip("?")))
        queries = [sql for sql in _changelist_queries(superuser_client, params)
                   if "envoy_django_job" in sql and not sql.upper().startswith("EXPLAIN")]
        page = [sql for sql in queries if "COUNT(" not in sql.upper()]
        assert len(page) == 1, (name, queries)
        for sql in queries:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on envoy_django_job" not in plan, (name, sql, plan)
            assert "Index" in plan, (name, sql, plan)
    response = superuser_client.get(URL)
    assert response.context["cl"].paginator.count_kind == "estimate"
    assert re.search(r"about 1\d,\d{3} jobs|about 2\d,\d{3} jobs", response.content.decode())
