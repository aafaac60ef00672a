"""Scale: admin and API query shapes against a large generated dataset.

The dataset (``--scale-jobs``, default 1,000,000 jobs and about 5 Step rows
per job) is generated in PostgreSQL with ``INSERT ... SELECT
generate_series``, then VACUUM ANALYZE, in the database
``<ENVOY_BENCH_DB>_scale_<jobs>`` (e.g. envoy_bench_scale_1000000, about
3 GB). It is kept between runs and reused when the dataset version and the
schema match (``--regenerate`` forces a rebuild; ``dropdb`` it to free the
space).

Status mix, like a long-lived production table: 95% done, 2% failed, 0.5%
cancelled, 0.2% blocking (one pending wait each, half of them escalations),
0.1% pending with a future ``run_after``, 0.02% running with a live lease;
10% of done jobs had an approved escalation. Nothing is due, so the sweep
measured here is the steady-state sweep every worker runs every
SWEEP_INTERVAL: queries that find nothing to do.

Each query shape is run once to warm up and ``--repeat`` times; the SQL it
sends is captured and EXPLAINed (the plan's top node and every scan, with
any Seq Scan on the job or step table flagged).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.flows import SCALE_FLOWS as FLOWS  # registered, like a real project's flows

DATASET_VERSION = 3
BIG_TABLES = ("envoy_django_job", "envoy_django_step")

LONG_JOB_STEPS = 2000

# i is 1..N; the CASE picks the status mix described above.
STATUS_SQL = """CASE
    WHEN i %% 5000 = 1 THEN 'running'
    WHEN i %% 1000 = 2 THEN 'pending'
    WHEN i %% 500 = 3 THEN 'blocking'
    WHEN i %% 50 = 4 THEN 'failed'
    WHEN i %% 200 = 5 THEN 'cancelled'
    ELSE 'done' END"""

INSERT_JOBS = """
INSERT INTO envoy_django_job (
    id, flow, status, state, step, max_steps, context, input, output, error, error_type, traceback,
    parent_id, parent_wait_id, attempts, progress, progress_message, idempotency_key, lease_owner,
    lease_expires_at, run_after, enqueued_at, claims, created_at, updated_at, started_at, finished_at)
SELECT
    gen_random_uuid(),
    (%(flows)s::text[])[1 + i %% 20],
    s.status,
    'S' || (1 + i %% 9),
    CASE WHEN s.status = 'pending' THEN 1 ELSE 1 + i %% 9 END,
    25,
    jsonb_build_object(
        'version', 1, 'state', 'S' || (1 + i %% 9), 'phase', 'route', 'step', 1 + i %% 9,
        'input', jsonb_build_object('n', i, 'customer', 'c-' || (i %% 5000)),
        'output', jsonb_build_object('n', i, 'summary', repeat('x', 80)),
        'data', jsonb_build_object('customer', 'c-' || (i %% 5000), 'notes', repeat('lorem ipsum ', 12)),
        'done', CASE s.status WHEN 'done' THEN 'finished' END,
        'error', NULL, 'waits', '{}'::jsonb, 'progress', NULL),
    jsonb_build_object('n', i, 'customer', 'c-' || (i %% 5000)),
    CASE WHEN s.status IN ('done', 'failed', 'cancelled')
         THEN jsonb_build_object('n', i, 'summary', repeat('x', 80)) END,
    CASE s.status WHEN 'failed' THEN 'RuntimeError: upstream said 503' WHEN 'cancelled' THEN 'cancelled' ELSE '' END,
    CASE s.status WHEN 'failed' THEN 'RuntimeError' ELSE '' END,
    CASE s.status WHEN 'failed' THEN 'Traceback (most recent call last):'
        || repeat(E'\\n  File "flows.py", line 12, in handler', 6) || E'\\nRuntimeError: upstream said 503'
        ELSE '' END,
    NULL, '', 0, NULL, '', NULL,
    CASE s.status WHEN 'running' THEN 'bench-host:4242:1:abcdef' ELSE '' END,
    CASE s.status WHEN 'running' THEN timestamptz '2100-01-01' END,
    CASE s.status WHEN 'pending' THEN timestamptz '2100-01-01' + (i %% 1000) * interval '1 minute' END,
    s.created + interval '5 ms',
    0,
    s.created,
    s.created + interval '10 seconds',
    CASE WHEN s.status <> 'pending' THEN s.created + interval '1 second' END,
    CASE WHEN s.status IN ('done', 'failed', 'cancelled') THEN s.created + interval '10 seconds' END
FROM generate_series(1, %(jobs)s) AS i,
LATERAL (SELECT """ + STATUS_SQL + """ AS status,
                timestamptz '2024-01-01' + i * interval '30 seconds' AS created) AS s
"""

# Steps: job.step rows per job (1..9, 5 on average), none for pending jobs.
INSERT_STEPS = """
INSERT INTO envoy_django_step (job_id, number, state, phase, next_state, attempt, input, output,
                               error, traceback, notes, worker, started_at, finished_at)
SELECT j.id, n, 'S' || n, 'state', CASE WHEN n < j.step THEN 'S' || (n + 1) ELSE '' END, 1,
       jsonb_build_object('n', n), jsonb_build_object('n', n, 'ok', true), '', '', '[]',
       'bench-host:4242:1:abcdef', j.created_at + n * interval '1 second',
       j.created_at + n * interval '1 second' + interval '20 ms'
FROM envoy_django_job j, LATERAL generate_series(1, j.step) AS n
WHERE j.status <> 'pending'
"""

# One long-running job (an agent loop) with LONG_JOB_STEPS more history rows.
INSERT_LONG_STEPS = """
INSERT INTO envoy_django_step (job_id, number, state, phase, next_state, attempt, input, output,
                               error, traceback, notes, worker, started_at, finished_at)
SELECT j.id, 100 + n, 'S' || (1 + n %% 9), 'state', 'S' || (1 + (n + 1) %% 9), 1,
       jsonb_build_object('n', n), jsonb_build_object('n', n, 'ok', true), '', '', '[]',
       'bench-host:4242:1:abcdef', j.created_at + n * interval '1 second',
       j.created_at + n * interval '1 second' + interval '20 ms'
FROM envoy_django_job j, generate_series(1, %(long)s) AS n
WHERE j.created_at = timestamptz '2024-01-01' + %(long_i)s * interval '30 seconds'
"""

INSERT_WAITS = """
INSERT INTO envoy_django_wait (job_id, wait_id, type, status, params, value, error, child_id,
                               expires_at, created_at, resolved_at)
SELECT j.id,
       CASE WHEN j.status = 'blocking' AND mod(j.step, 2) = 1 THEN 'approval-' || md5(j.id::text)
            WHEN j.status = 'blocking' THEN 'payment-' || md5(j.id::text)
            ELSE 'approval-' || md5(j.id::text) END,
       CASE WHEN j.status = 'blocking' AND mod(j.step, 2) = 0 THEN 'event' ELSE 'escalation' END,
       CASE WHEN j.status = 'blocking' THEN 'pending' ELSE 'approved' END,
       '{}'::jsonb,
       CASE WHEN j.status = 'blocking' THEN NULL ELSE '{"ok": true}'::jsonb END,
       '', NULL,
       CASE WHEN j.status = 'blocking' AND mod(j.step, 4) = 0 THEN timestamptz '2100-01-01' END,
       j.created_at + interval '2 seconds',
       CASE WHEN j.status = 'blocking' THEN NULL ELSE j.created_at + interval '8 seconds' END
FROM envoy_django_job j
WHERE j.status = 'blocking' OR (j.status = 'done' AND j.flow IN ('invoice.review', 'hr.review'))
"""

INSERT_ESCALATIONS = """
INSERT INTO envoy_django_escalation (id, job_id, wait_id, "user", "group", message, inputs, on_reject, status,
                                     response, replied_by_id, replied_by_username, replied_at, created_at, updated_at)
SELECT gen_random_uuid(), w.job_id, w.wait_id, 'alice', '', 'Approve this refund?',
       '[{"id": "ok", "type": "approve", "label": "Looks right", "required": false}]'::jsonb, 'fail',
       w.status, CASE WHEN w.status = 'approved' THEN '{"ok": true}'::jsonb END, NULL,
       CASE WHEN w.status = 'approved' THEN 'alice' ELSE '' END, w.resolved_at, w.created_at,
       COALESCE(w.resolved_at, w.created_at)
FROM envoy_django_wait w WHERE w.type = 'escalation'
"""

TABLES = "envoy_django_step, envoy_django_wait, envoy_django_escalation, envoy_django_job"


def run(args: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """Make sure the dataset exists, switch Django to it, time every shape; switch back."""

    from bench.run import libpq_dsn, recreate_database
    from bench.settings import bench_db_name

    name = f"{bench_db_name()}_scale_{args.scale_jobs}"
    recreate_database(name, keep=True)
    info = ensure_dataset(libpq_dsn(name), args, log)
    with using_database(name):
        shapes, notes = measure_all(args, log)
    return {**info, "database": name, "shapes": shapes, "notes": notes}


@contextmanager
def using_database(name: str) -> Iterator[None]:
    """Point Django's default connection at database ``name`` for the block."""
    from django.db import connections

    default = connections["default"]
    previous = default.settings_dict["NAME"]
    connections.close_all()
    default.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connections.close_all()
        default.settings_dict["NAME"] = previous


# --- the dataset -------------------------------------------------------------------------


def ensure_dataset(dsn: str, args: Any, log: Callable[[str], None]) -> dict[str, Any]:
    import psycopg

    wanted = {"version": DATASET_VERSION, "jobs": args.scale_jobs, "schema": schema_fingerprint(dsn)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_scale_meta (key text PRIMARY KEY, value jsonb NOT NULL)")
        row = conn.execute("SELECT value FROM bench_scale_meta WHERE key = 'dataset'").fetchone()
        if row and not args.regenerate and {k: row[0].get(k) for k in wanted} == wanted:
            log(f"scale dataset cached: {row[0]['jobs']:,} jobs, {row[0]['steps']:,} steps "
                f"(generated in {row[0]['generated_seconds']} s; --regenerate to rebuild)")
            return {**row[0], "cached": True}
        log(f"generating the scale dataset: {args.scale_jobs:,} jobs (this takes a while; it is cached)")
        began = time.perf_counter()
        conn.execute("DELETE FROM bench_scale_meta")
        conn.execute(f"TRUNCATE {TABLES} CASCADE")
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            conn.execute("SET LOCAL work_mem = '64MB'")
            try:  # skip the per-row foreign key triggers (superuser only); the data is consistent by construction
                with conn.transaction():
                    conn.execute("SET LOCAL session_replication_role = replica")
            except psycopg.errors.InsufficientPrivilege:
                pass
            indexes = drop_secondary_indexes(conn)
            params = {"flows": FLOWS, "jobs": args.scale_jobs, "long": LONG_JOB_STEPS,
                      "long_i": long_job_i(args.scale_jobs)}
            for label, sql in (("jobs", INSERT_JOBS), ("steps", INSERT_STEPS), ("long job steps", INSERT_LONG_STEPS),
                               ("waits", INSERT_WAITS), ("escalations", INSERT_ESCALATIONS)):
                t0 = time.perf_counter()
                count = conn.execute(sql, params if "%(" in sql else None).rowcount
                log(f"  {label}: {count:,} rows in {time.perf_counter() - t0:.0f} s")
            t0 = time.perf_counter()
            for statement in indexes:
                conn.execute(statement)
            log(f"  indexes rebuilt in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        for table in TABLES.split(", "):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        log(f"  VACUUM ANALYZE in {time.perf_counter() - t0:.0f} s")
        info = dataset_counts(conn)
        info.update(wanted, generated_seconds=round(time.perf_counter() - began, 1))
        conn.execute("INSERT INTO bench_scale_meta (key, value) VALUES ('dataset', %s)",
                     [psycopg.types.json.Jsonb(info)])
        log(f"scale dataset ready in {info['generated_seconds']} s")
        return {**info, "cached": False}


def long_job_i(jobs: int) -> int:
    """The row number of the long job: mid-table, a multiple of 1000 (so its status is done)."""
    return max(jobs // 2 // 1000 * 1000, 1000)


def drop_secondary_indexes(conn: Any) -> list[str]:
    """Drop the non-primary-key indexes of the envoy tables; return the statements that rebuild them.

    Building an index once after the bulk insert is several times faster than
    maintaining it row by row. Unique constraints stay (they are few and the
    dataset is built not to violate them).
    """
    rows = conn.execute(
        """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relname = ANY(%s) AND NOT i.indisprimary
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        [TABLES.split(", ")],
    ).fetchall()
    for name, _ in rows:
        conn.execute(f"DROP INDEX {name}")
    return [definition for _, definition in rows]


def schema_fingerprint(dsn: str) -> str:
    """The applied envoy_django migrations: a new one means the dataset must be rebuilt."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name FROM django_migrations WHERE app = 'envoy_django' ORDER BY name").fetchall()
    return ",".join(r[0] for r in rows)


def dataset_counts(conn: Any) -> dict[str, Any]:
    def count(sql: str) -> int:
        return conn.execute(sql).fetchone()[0]

    statuses = dict(
        conn.execute("SELECT status, count(*) FROM envoy_django_job GROUP BY status ORDER BY 2 DESC").fetchall())
    sizes = dict(conn.execute(
        "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class WHERE relname = ANY(%s)",
        [TABLES.split(", ")]).fetchall())
    return {
        "jobs": count("SELECT count(*) FROM envoy_django_job"),
        "steps": count("SELECT count(*) FROM envoy_django_step"),
        "waits": count("SELECT count(*) FROM envoy_django_wait"),
        "escalations": count("SELECT count(*) FROM envoy_django_escalation"),
        "status_counts": ", ".join(f"{k} {v:,}" for k, v in statuses.items()),
        "table_sizes": sizes,
    }


# --- timing and plans -------------------------------------------------------------------------


class Capture:
    """Every SQL statement a block sends, with its time."""

    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []

    def __call__(self, execute, sql, params, many, context):  # noqa: ANN001
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append({"sql": sql, "params": params, "ms": (time.perf_counter() - t0) * 1000})


def explain(sql: str, params: Any) -> dict[str, Any] | None:
    from django.db import connection

    head = sql.lstrip().split(None, 1)[0].upper()
    if head not in ("SELECT", "WITH"):
        return None
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        raw = cursor.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    scans: list[str] = []

    def walk(node: dict) -> None:
        kind = node["Node Type"]
        if "Scan" in kind and node.get("Relation Name"):
            index = f" using {node['Index Name']}" if node.get("Index Name") else ""
            scans.append(f"{kind}{index} on {node['Relation Name']}")
        elif kind == "Bitmap Index Scan":
            scans.append(f"Bitmap Index Scan on {node.get('Index Name')}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    seq = sorted({s.split(" on ")[-1] for s in scans if s.startswith("Seq Scan") and s.split(" on ")[-1] in BIG_TABLES})
    return {"top": plan["Node Type"], "scans": scans, "seq_scans": seq, "rows": plan.get("Plan Rows")}


def measure(name: str, fn: Callable[[], Any], repeat: int, *, budget: bool = True) -> dict[str, Any]:
    from django.db import connection

    capture = Capture()
    t0 = time.perf_counter()
    with connection.execute_wrapper(capture):
        fn()
    cold = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    plans = []
    for query in capture.queries:
        plan = explain(query["sql"], query["params"])
        short = " ".join(query["sql"].split())[:160]
        plans.append({"sql": short, "ms": round(query["ms"], 2), **(plan or {})})
    explained = [p for p in plans if p.get("top")]
    # The query that matters most: the slowest one that touches a table.
    ours = [p for p in explained if any("envoy_django_" in scan for scan in p.get("scans", []))]
    main = max(ours or [p for p in explained if p.get("scans")], key=lambda p: p["ms"], default=None)
    summary = (f"{main['top']}: " + "; ".join(dict.fromkeys(main["scans"]))) if main else "-"
    seq = sorted({t for p in explained for t in p.get("seq_scans", [])})
    return {
        "name": name,
        "median_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
        "cold_ms": round(cold, 2),
        "queries": len(capture.queries),
        "plan_summary": summary,
        "seq_scans": seq,
        "budget": budget,
        "plans": plans,
    }


def sample_ids(jobs: int) -> dict[str, Any]:
    """A typical done job (9 steps, an escalation) in the middle of the table, and the long job."""
    from envoy_django.models import Job

    typical = Job.objects.filter(status="done", step=9, flow="invoice.review")
    total = typical.count()
    job_id = typical.order_by("created_at").values_list("pk", flat=True)[total // 2]
    long_created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=30 * long_job_i(jobs))
    long_id = Job.objects.filter(created_at=long_created).values_list("pk", flat=True).first()
    return {"job": job_id, "long": long_id}


def changelist_page(qs: Any) -> Callable[[], Any]:
    """What the job changelist fetches: its paginator's count and 100 rows of the listed columns."""
    try:
        from envoy_django.admin.jobs import LIST_FIELDS
        from envoy_django.admin.pagination import EstimatedCountPaginator
    except ImportError:  # no admin yet: a plain bounded count and whole rows
        return lambda: (qs[:1001].count(), list(qs.order_by("-created_at", "-id")[:100]))

    def fetch() -> Any:
        listed = qs.only(*LIST_FIELDS).order_by("-created_at", "-id")
        paginator = EstimatedCountPaginator(listed, 100)
        return paginator.count, list(paginator.page(1).object_list)
    return fetch


def measure_all(args: Any, log: Callable[[str], None]) -> tuple[list[dict], list[str]]:
    from envoy_django import registry
    from envoy_django.models import Escalation, Job, Step, Wait
    from envoy_django.scheduler import api
    from envoy_django.scheduler.sweep import cleanup_orphaned_jobs

    ids = sample_ids(args.scale_jobs)
    job_id, long_id = ids["job"], ids["long"]
    repeat = args.repeat
    shapes: list[dict] = []
    notes: list[str] = []

    def add(name: str, fn: Callable[[], Any], *, budget: bool = True) -> None:
        shape = measure(name, fn, repeat, budget=budget)
        shapes.append(shape)
        flag = f"  SEQ SCAN on {', '.join(shape['seq_scans'])}" if shape["seq_scans"] else ""
        log(f"  {name}: {shape['median_ms']} ms ({shape['queries']} queries) {shape['plan_summary']}{flag}")

    # The job list, as the admin's changelist queries it (ORM, no rendering).
    add("ORM job list: first page (-created_at,-id; count + 100 rows)", changelist_page(Job.objects.all()))
    add("ORM job list: status=failed", changelist_page(Job.objects.filter(status="failed")))
    add("ORM job list: status=running", changelist_page(Job.objects.filter(status="running")))
    add("ORM job list: search by exact id (pk=)", changelist_page(Job.objects.filter(pk=job_id)))
    prefix = [name for name in registry.registered() if name.startswith("support.")]
    add("ORM job list: search by flow prefix 'support.' (flow IN registered names)",
        changelist_page(Job.objects.filter(flow__in=sorted(prefix))))
    add("ORM job list: flow__startswith='support.' (LIKE; for comparison)",
        changelist_page(Job.objects.filter(flow__startswith="support.")), budget=False)
    add("ORM job list: exact COUNT(*) of all jobs (for comparison)", lambda: Job.objects.count(), budget=False)
    # A job's page.
    add("ORM job page: job by pk", lambda: Job.objects.get(pk=job_id))
    add("ORM job page: steps by pk, first 100", lambda: list(Step.objects.filter(job_id=job_id).order_by("pk")[:100]))
    add("ORM job page: all steps by pk (9 steps)", lambda: list(Step.objects.filter(job_id=job_id).order_by("pk")))
    if long_id:
        n = Step.objects.filter(job_id=long_id).count()
        add(f"ORM job page: all steps by pk, long job ({n:,} steps)",
            lambda: list(Step.objects.filter(job_id=long_id).order_by("pk")))
        add("ORM job page: steps by pk, first 100, long job",
            lambda: list(Step.objects.filter(job_id=long_id).order_by("pk")[:100]))
    add("ORM job page: waits", lambda: list(Wait.objects.filter(job_id=job_id).order_by("pk")))
    add("ORM job page: escalations", lambda: list(Escalation.objects.filter(job_id=job_id).order_by("created_at")))
    add("ORM job page: children", lambda: list(Job.objects.filter(parent_id=job_id).order_by("created_at", "id")[:101]))
    add("ORM escalations: pending for one user",
        lambda: list(Escalation.objects.filter(status="pending", user="alice").order_by("-created_at")[:100]))
    # The API and the sweep.
    blocking = Job.objects.filter(status="blocking").count()
    add(f"list_blocking_jobs() ({blocking:,} blocking jobs)", api.list_blocking_jobs)
    add("cleanup_orphaned_jobs() (one steady-state sweep)", cleanup_orphaned_jobs)
    # The overview page's and the metrics scrape's queries.
    from django.utils import timezone

    from envoy_django import overview
    from envoy_django.metrics import DatabaseCollector

    add("overview: unfinished jobs per flow and status", overview.unfinished_by_flow)
    add("overview: the last hour of ends, per minute", lambda: overview.last_hour(timezone.now()))
    add("overview: stalled jobs (first 101)", lambda: overview.stalled_jobs(timezone.now()))
    add("overview: oldest pending escalations", overview.oldest_escalations)
    add("metrics scrape: the database's gauges", lambda: list(DatabaseCollector().collect()))

    admin_shapes(add, ids, notes, log)
    return shapes, notes


def admin_shapes(add: Callable, ids: dict[str, Any], notes: list[str], log: Callable[[str], None]) -> None:
    """The real admin views through Django's test Client, if the admin is there."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from envoy_django.models import Escalation, Job

    if Job not in admin.site._registry:
        notes.append("envoy_django registers no Job admin yet: admin views not timed (ORM shapes only).")
        log("  (no Job admin registered: skipping the admin views)")
        return
    User = get_user_model()
    user = User.objects.filter(username="bench-admin").first() or User.objects.create_superuser(
        "bench-admin", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)

    def get(url: str) -> Callable[[], Any]:
        def fetch() -> None:
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url} answered {response.status_code}")
        return fetch

    job_id = ids["job"]
    try:
        changelist = reverse("admin:envoy_django_job_changelist")
        change = reverse("admin:envoy_django_job_change", args=[job_id])
    except NoReverseMatch as exc:
        notes.append(f"admin URLs not found ({exc}); admin views not timed")
        return
    status_param = status_filter_param(Job)
    add("admin job changelist: first page", get(changelist))
    add("admin job changelist: status=failed filter", get(f"{changelist}?{status_param}=failed"))
    add("admin job changelist: flow filter (support.triage)", get(f"{changelist}?flow=support.triage"))
    add("admin job changelist: search by exact id", get(f"{changelist}?q={job_id}"))
    add("admin job changelist: search by flow prefix 'support.'", get(f"{changelist}?q=support."))
    add("admin job page (9 steps)", get(change))
    if ids.get("long"):
        add("admin job page (long job, 2,009 steps)", get(reverse("admin:envoy_django_job_change", args=[ids["long"]])))
    if Escalation in admin.site._registry:
        add("admin escalation changelist: first page", get(reverse("admin:envoy_django_escalation_changelist")))
    add("admin Envoy overview page", get(reverse("admin:envoy_django_overview_changelist")))
    add("GET /envoy/metrics/ (the database gauges; no counting in the bench)", get(reverse("envoy_django:metrics")))


def status_filter_param(model: Any) -> str:
    """The query parameter the job changelist's status filter uses."""
    from django.contrib import admin

    model_admin = admin.site._registry[model]
    for item in model_admin.list_filter:
        if item == "status" or (isinstance(item, tuple) and item[0] == "status"):
            return "status__exact"
        parameter = getattr(item, "parameter_name", None)
        if parameter and "status" in parameter:
            return parameter
    return "status__exact"
