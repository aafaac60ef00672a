#!/usr/bin/env python
"""Benchmarks: envoy-django side by side with raw RQ and the PostgreSQL ceiling.

    make bench                                  # everything, full sizes (about 25 minutes)
    make bench BENCH_ARGS="--quick"             # small sizes, one round, a few minutes
    make bench-smoke                            # every phase, tiny, results to a temp dir (CI runs it)
    make bench BENCH_ARGS="--only ceiling,rq,envoy --jobs 500 --rounds 1"
    make bench BENCH_ARGS="--scale-jobs 0"      # skip the 1,000,000-job dataset
    make bench BENCH_ARGS="--peers"             # also LangGraph, DBOS and pgbench, same PostgreSQL
    make bench BENCH_ARGS="--profile"           # also py-spy a worker, in-process micro-benchmarks
    .venv/bin/python bench/run.py --render      # rebuild results.md and the chart from results.json

The chart needs matplotlib: pip install -e '.[bench]' (py-spy for --profile).

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL). Uses its own database
(``envoy_bench``, dropped and re-created each run; the scale dataset lives
in ``envoy_bench_scale`` and is kept, so it is generated once) and its own
Redis DB (5, emptied with FLUSHDB). Prints one table and writes
bench/results/results.json, results.md and throughput.png.

What is measured (see bench/results/results.md for the numbers):

1. ceiling: the checkpoint the executor commits per transition (UPDATE the
   job row, INSERT one Step row, synchronous commit) looped by 1 and 2
   psycopg client processes, no Django: transactions per second.
2. raw RQ: JOBS no-op jobs drained by 1 and 2 SimpleWorkers (burst), and
   the same jobs each committing that checkpoint ("RQ plus one transaction").
   Jobs are enqueued first; the clock starts when the started workers are
   released and stops when the last job ends.
3. envoy: JOBS jobs of a 10-state no-op flow and of a 1-state flow, run by
   ``manage.py envoy_worker --concurrency N --burst`` (N = 1, 2). Jobs are
   scheduled first with workers stopped (the 10-state jobs one schedule()
   call at a time, the 1-state jobs with schedule_many(), 1,000 per call:
   both rates are reported); the clock runs
   from the first claim to the last job finishing (timestamps in the Job
   rows), so process start-up is left out (wall time is reported beside it).
   Also the 1-state flow with CONN_MAX_AGE=0 (Django's default: a new
   database connection for every RQ job).
4. latency, with two idle ``envoy_worker`` processes waiting, one sample at
   a time (each waited for, then 20 ms idle): schedule() to the first state
   starting, reply_to_escalation() to the job resuming, a child finishing to
   its parent resuming (Step.started_at and Job.finished_at against the
   caller's clock: one machine, one clock). A sample that takes over a
   second is counted as stalled (left to the sweep) and reported.
3b. peers (--peers; bench/peers): LangGraph + PostgresSaver (durability
   "sync") and DBOS running the same 10-step no-op workflow in one process,
   in their own virtualenv (bench/.venv-peers), and pgbench looping envoy's
   checkpoint as a transaction and as one statement (the physical ceiling).
   They run inside the throughput rounds, so they see the same load.
5. scale (bench/scale.py): admin and API query shapes on a generated
   dataset (1,000,000 jobs, ~5,000,000 steps), with EXPLAIN.
6. worker memory: VmRSS of one worker child process after 1,000 and 20,000 jobs.
7. retention (bench/retention.py): envoy_purge's batches on a fresh
   100,000-job dataset while a sweep and short row locks keep going.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from envoy_django.testing.processes import WorkerProcesses, wait_until  # noqa: E402  (after the path)

PHASES = ("ceiling", "rq", "envoy", "latency", "memory", "scale", "retention")
RAW_QUEUE = "bench-raw"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- set-up ------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases ({', '.join(PHASES)})")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per throughput run (default 2000)")
    parser.add_argument("--workers", default="1,2", help="worker/client counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds (ceiling, RQ, envoy interleaved); medians are reported (default 3)")
    parser.add_argument("--latency-samples", type=int, default=500, help="samples per latency (default 500)")
    parser.add_argument("--latency-gap", type=float, default=0.02,
                        help="idle seconds after each latency sample finishes (default 0.02)")
    parser.add_argument("--memory-jobs", default="1000,5000,10000,20000",
                        help="read the worker's RSS after these many jobs (default 1000,5000,10000,20000)")
    parser.add_argument("--scale-jobs", type=int, default=1_000_000, help="jobs in the scale dataset (0: skip)")
    parser.add_argument("--steps-per-job", type=int, default=5, help="average Step rows per job in the dataset")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the scale dataset even if cached")
    parser.add_argument("--purge-jobs", type=int, default=100_000,
                        help="jobs in the retention phase's dataset, purged under load (0: skip)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per scale query shape")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for trying it out: 300 jobs, 100 samples, 200/2000 jobs, 50,000-job dataset")
    parser.add_argument("--smoke", action="store_true",
                        help="every phase at the smallest size that still runs it (200 jobs), results to a "
                             "temporary directory: CI runs this so the benchmark cannot rot; it asserts no timing")
    parser.add_argument("--peers", action="store_true",
                        help="also run LangGraph + PostgresSaver, DBOS (in bench/.venv-peers) and pgbench on the same "
                             "PostgreSQL, in the throughput rounds (bench/peers)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile a worker with py-spy and time the proposed changes in-process "
                             "(bench/profile.py)")
    parser.add_argument("--out", default=None, help="results directory (default bench/results)")
    parser.add_argument("--render", action="store_true",
                        help="only rebuild results.md and the chart from the results.json in --out")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = min(args.jobs, 300)
        args.latency_samples = min(args.latency_samples, 100)
        args.memory_jobs = "200,1000,2000"
        args.scale_jobs = min(args.scale_jobs, 50_000)
        args.purge_jobs = min(args.purge_jobs, 20_000)
        args.rounds = 1
    if args.smoke:
        args.jobs = min(args.jobs, 200)
        args.latency_samples = min(args.latency_samples, 20)
        args.memory_jobs = "100,200"
        args.scale_jobs = min(args.scale_jobs, 2_000)
        args.purge_jobs = min(args.purge_jobs, 2_000)
        args.repeat = 1
        args.rounds = 1
        args.peers = True  # so the peers' scripts cannot rot either
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="envoy-bench-smoke-") if args.smoke else str(RESULTS)
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    args.workers = [int(n) for n in args.workers.split(",")]
    args.memory_jobs = [int(n) for n in args.memory_jobs.split(",")]
    return args


def require_services() -> None:
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        sys.exit(f"bench: set {' and '.join(missing)} (PostgreSQL and Redis), e.g.\n"
                 "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres "
                 "REDIS_URL=redis://127.0.0.1:6379/0 make bench")
    if not os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        sys.exit("bench: DATABASE_URL must point at PostgreSQL")


def libpq_dsn(name: str) -> str:
    """A psycopg connection string for database ``name`` on DATABASE_URL's server."""
    import dj_database_url

    cfg = dj_database_url.parse(os.environ["DATABASE_URL"])
    parts = {"dbname": name, "host": cfg.get("HOST") or "", "port": cfg.get("PORT") or "",
             "user": cfg.get("USER") or "", "password": cfg.get("PASSWORD") or ""}
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v != "")


def admin_dsn() -> str:
    import dj_database_url

    return libpq_dsn(dj_database_url.parse(os.environ["DATABASE_URL"])["NAME"] or "postgres")


def recreate_database(name: str, *, keep: bool = False) -> None:
    """Create database ``name`` (dropping it first unless ``keep``) and migrate it."""
    import psycopg

    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not keep:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    migrate(name)


def migrate(name: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--settings", "bench.settings", "-v", "0"],
        cwd=ROOT, env={**os.environ, "ENVOY_BENCH_DB": name}, check=True,
    )


def redis_conn():
    from redis import Redis

    from bench.settings import bench_redis_url

    return Redis.from_url(bench_redis_url())


def reset_state() -> None:
    """Empty the envoy tables of the bench database and the bench Redis DB."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE envoy_django_step, envoy_django_wait, envoy_django_escalation, envoy_django_job CASCADE"
        )
    redis_conn().flushdb()


# --- machine and load ----------------------------------------------------------


def read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    import django
    import psycopg
    import rq
    from django.db import connection

    cpu = next((line.split(":", 1)[1].strip() for line in read_file("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next((int(line.split()[1]) for line in read_file("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal")), 0)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        pg_settings = {}
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections", "work_mem"):
            cursor.execute(f"SHOW {name}")
            pg_settings[name] = cursor.fetchone()[0]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "redis": redis_conn().info("server").get("redis_version"),
        "python": platform.python_version(),
        "django": django.get_version(),
        "rq": rq.__version__,
        "psycopg": psycopg.__version__,
        "conn_max_age": connection.settings_dict.get("CONN_MAX_AGE"),
    }


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    ticks = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_file(f"/proc/{entry.name}/stat")
            if stat:
                fields = stat.rsplit(")", 1)[1].split()
                ticks[int(entry.name)] = (int(fields[11]) + int(fields[12]), stat)
    return ticks


def busy_processes(limit: int = 5, window: float = 1.0) -> list[str]:
    """The processes using the most CPU over the next second (other engineers' tests, typically)."""
    hz = os.sysconf("SC_CLK_TCK")
    before = _cpu_ticks()
    time.sleep(window)
    after = _cpu_ticks()
    usage = []
    for pid, (ticks, _) in after.items():
        if pid in before:
            percent = (ticks - before[pid][0]) / hz / window * 100
            if percent >= 5:
                args = read_file(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
                usage.append((percent, f"{percent:.0f}% {pid} {' '.join(args.split())[:90]}"))
    return [line for _, line in sorted(usage, reverse=True)[:limit]]


class LoadWatch:
    """Load average at the start and end of each phase: how noisy the numbers are."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, Any]] = {}

    def start(self, phase: str) -> None:
        self.phases[phase] = {"load_before": round(os.getloadavg()[0], 2), "busy_before": busy_processes()}

    def end(self, phase: str) -> None:
        self.phases[phase]["load_after"] = round(os.getloadavg()[0], 2)


# --- statistics -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_ms(values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


# --- 1. the PostgreSQL ceiling --------------------------------------------------------


def checkpoint_payloads() -> list[dict[str, Any]]:
    """What the executor writes for each of bench_ten's ten transitions (context, output...)."""
    from envoy_django.registry import get_flow

    flow = get_flow("bench_ten")
    ctx = flow.initial_context(None)
    payloads = []
    while not ctx.done():
        result = flow.advance(ctx)
        after, state, phase = result.context, result.state, result.phase
        payloads.append({
            "context": after.serialize(),
            "job_state": after.state(),
            "job_step": after.step(),
            "step_state": state,
            "phase": phase,
            "next_state": after.state() if after.state() != state else "",
            "input": ctx.input(),
            "output": after.output(),
        })
        ctx = after
    return payloads


def make_running_jobs(count: int) -> list[str]:
    """Job rows held by the ceiling's lease owner, as the executor's jobs are while they run."""
    from django.utils import timezone

    from bench.checkpoint import OWNER
    from envoy_django.models import Job, JobStatus

    now = timezone.now()
    jobs = [Job(flow="bench_ten", status=JobStatus.RUNNING, state="S0", lease_owner=OWNER,
                lease_expires_at=now + dt.timedelta(seconds=30), started_at=now, created_at=now, updated_at=now)
            for _ in range(count)]
    Job.objects.bulk_create(jobs, batch_size=1000)
    return [str(job.pk) for job in jobs]


def bench_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connections

    from bench.checkpoint import ceiling_client
    from bench.settings import bench_db_name

    payloads = checkpoint_payloads()
    dsn = libpq_dsn(bench_db_name())
    fork = multiprocessing.get_context("fork")
    results = {}
    for clients in args.workers:
        reset_state()
        job_ids = make_running_jobs(args.jobs)
        connections.close_all()
        ready = [fork.Event() for _ in range(clients)]
        start = fork.Event()
        done = fork.Queue()
        procs = [fork.Process(target=ceiling_client, args=(dsn, job_ids[i::clients], payloads, ready[i], start, done))
                 for i in range(clients)]
        for proc in procs:
            proc.start()
        for event in ready:
            event.wait(60)
        began = time.monotonic()
        start.set()
        ends = [done.get(timeout=3600) for _ in procs]
        for proc in procs:
            proc.join()
        elapsed = max(ends) - began
        if any(proc.exitcode for proc in procs):
            raise RuntimeError("a ceiling client failed")
        transactions = len(job_ids) * len(payloads)
        results[str(clients)] = {
            "transactions": transactions,
            "seconds": round(elapsed, 3),
            "tps": round(transactions / elapsed, 1),
        }
        log(f"ceiling, {clients} client(s): {results[str(clients)]['tps']:.0f} transactions/s")
    return results


# --- 2. raw RQ -----------------------------------------------------------------------------


def bench_raw_rq(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connections
    from rq import Queue
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    from bench.checkpoint import rq_worker
    from bench.settings import bench_db_name, bench_redis_url

    payload = checkpoint_payloads()[0]
    results: dict[str, Any] = {"noop": {}, "checkpoint": {}}
    fork = multiprocessing.get_context("fork")
    for kind in ("noop", "checkpoint"):
        for workers in args.workers:
            reset_state()
            redis = redis_conn()
            queue = Queue(RAW_QUEUE, connection=redis, serializer=JSONSerializer)
            options = dict(result_ttl=0, failure_ttl=24 * 3600, timeout=-1)
            if kind == "noop":
                data = [Queue.prepare_data("bench.checkpoint.noop", args=(), **options) for _ in range(args.jobs)]
            else:
                job_ids = make_running_jobs(args.jobs)
                data = [Queue.prepare_data("bench.checkpoint.checkpoint", args=(job_id,), **options)
                        for job_id in job_ids]
            for i in range(0, len(data), 500):
                queue.enqueue_many(data[i:i + 500])
            connections.close_all()
            env = {"BENCH_PG_DSN": libpq_dsn(bench_db_name())}
            if kind == "checkpoint":
                env["BENCH_CHECKPOINT_PAYLOAD"] = json.dumps(payload)
            saved = {k: os.environ.get(k) for k in ("BENCH_PG_DSN", "BENCH_CHECKPOINT_PAYLOAD")}
            os.environ.pop("BENCH_CHECKPOINT_PAYLOAD", None)
            os.environ.update(env)
            try:
                ready = [fork.Event() for _ in range(workers)]
                start = fork.Event()
                done = fork.Queue()
                procs = [fork.Process(target=rq_worker, args=(bench_redis_url(), RAW_QUEUE, ready[i], start, done))
                         for i in range(workers)]
                for proc in procs:
                    proc.start()
                for event in ready:
                    event.wait(60)
                began = time.monotonic()
                start.set()
                ends = [done.get(timeout=3600) for _ in procs]
                for proc in procs:
                    proc.join()
                elapsed = max(ends) - began
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            failed = FailedJobRegistry(queue=queue).count
            if queue.count or failed:
                raise RuntimeError(f"raw RQ {kind}: {queue.count} jobs left, {failed} failed")
            if kind == "checkpoint":
                from envoy_django.models import Step

                assert Step.objects.count() == args.jobs, "every RQ job commits one checkpoint"
            results[kind][str(workers)] = {
                "jobs": args.jobs, "seconds": round(elapsed, 3), "jobs_per_s": round(args.jobs / elapsed, 1),
            }
            label = "no-op" if kind == "noop" else "plus one transaction"
            log(f"raw RQ {label}, {workers} worker(s): {results[kind][str(workers)]['jobs_per_s']:.0f} jobs/s")
    return results


# --- envoy_worker processes -------------------------------------------------------------


def bench_workers() -> WorkerProcesses:
    """``manage.py envoy_worker`` supervisors on the bench settings."""
    from django.db import connections

    connections.close_all()  # the bench's own idle connection must not count against the workers'
    return WorkerProcesses("bench.settings", cwd=ROOT)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the worker processes a supervisor forked)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_file(f"/proc/{entry.name}/stat")
        if stat:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                children.append(int(entry.name))
    return sorted(children)


def rss_kb(pid: int) -> dict[str, int]:
    values = {}
    for line in read_file(f"/proc/{pid}/status").splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0])
    return values


def unfinished(ids: list[str] | None = None) -> int:
    from envoy_django.models import FINISHED_STATUSES, Job

    qs = Job.objects.exclude(status__in=FINISHED_STATUSES)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.count()


def schedule_each(flow: str, count: int) -> tuple[list[str], float, float]:
    """Schedule ``count`` jobs one ``schedule()`` call at a time, back to back, no worker running.

    Returns the ids, calls per second and the p50 of one call in ms.
    """
    from envoy_django import scheduler

    ids, took = [], []
    began = time.perf_counter()
    for i in range(count):
        start = time.perf_counter()
        ids.append(scheduler.schedule(flow, i))
        took.append(time.perf_counter() - start)
    return ids, count / (time.perf_counter() - began), round(percentile(took, 0.5) * 1000, 2)


SCHEDULE_BATCH = 1000


def schedule_batches(flow: str, count: int) -> tuple[list[str], float, None]:
    """Schedule ``count`` jobs with ``schedule_many()``, 1,000 per call; return ids and jobs per second."""
    from envoy_django import scheduler

    ids: list[str] = []
    began = time.perf_counter()
    for start in range(0, count, SCHEDULE_BATCH):
        ids += scheduler.schedule_many([(flow, i) for i in range(start, min(count, start + SCHEDULE_BATCH))])
    return ids, count / (time.perf_counter() - began), None


# --- 3. envoy throughput --------------------------------------------------------------------


def bench_envoy(args: argparse.Namespace) -> dict[str, Any]:
    from django.db.models import Max, Min

    from envoy_django.models import Job, JobStatus, Step

    results: dict[str, Any] = {"ten": {}, "one": {}, "one_conn0": {}}
    runs = [("ten", "bench_ten", 10, n) for n in args.workers] + [("one", "bench_one", 1, n) for n in args.workers]
    runs.append(("one_conn0", "bench_one", 1, args.workers[0]))
    for kind, flow, transitions_per_job, workers in runs:
        reset_state()
        # The 10-state runs schedule one call at a time, the 1-state runs in batches: both rates get measured.
        batched = kind != "ten"
        ids, schedule_rate, call_p50 = (schedule_batches if batched else schedule_each)(flow, args.jobs)
        handle = bench_workers()
        began = time.perf_counter()
        extra_env = {"ENVOY_BENCH_CONN_MAX_AGE": "0"} if kind == "one_conn0" else None
        process = handle.start(workers, burst=True, extra_env=extra_env)
        try:
            process.wait(timeout=max(600, args.jobs))
        finally:
            handle.stop()
        wall = time.perf_counter() - began
        left = unfinished(ids)
        done = Job.objects.filter(pk__in=ids, status=JobStatus.DONE).count()
        if left or done != len(ids):
            raise RuntimeError(f"envoy {flow}: {left} jobs unfinished, {len(ids) - done} not done")
        steps = Step.objects.filter(error="").count()
        assert steps == len(ids) * transitions_per_job, f"{steps} steps for {len(ids)} jobs"
        window = Job.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        seconds = (window["last"] - window["first"]).total_seconds()
        results[kind][str(workers)] = {
            "jobs": len(ids),
            "transitions": steps,
            "seconds": round(seconds, 3),
            "wall_seconds": round(wall, 3),
            "transitions_per_s": round(steps / seconds, 1),
            "jobs_per_s": round(len(ids) / seconds, 1),
            "schedule_many_jobs_per_s" if batched else "schedule_calls_per_s": round(schedule_rate, 1),
            **({} if batched else {"schedule_call_p50_ms": call_p50}),
            "workers_seen": Step.objects.values("worker").distinct().count(),
        }
        unit = "transitions/s" if kind == "ten" else "jobs/s"
        rate = results[kind][str(workers)]["transitions_per_s" if kind == "ten" else "jobs_per_s"]
        note = ", CONN_MAX_AGE=0" if kind == "one_conn0" else ""
        log(f"envoy {flow}{note}, {workers} worker(s): {rate:.0f} {unit} (wall {wall:.1f}s incl. start-up)")
    return results


# --- 3b. the peers (--peers) ----------------------------------------------------------------


def bench_peers(args: argparse.Namespace) -> dict[str, Any]:
    """LangGraph, DBOS and pgbench on the same server (bench/peers); one process each for the first two."""
    from django.db import connections

    from bench.peers import run_peers
    from bench.settings import bench_db_name

    reset_state()
    connections.close_all()
    found = run_peers(jobs=args.jobs, clients=args.workers, admin_dsn=admin_dsn(),
                      envoy_dsn=libpq_dsn(bench_db_name()), log=log)
    reset_state()
    for peer in ("langgraph", "dbos"):  # one process: filed under N=1, as envoy's one worker is
        if "steps_per_s" in found.get(peer, {}):
            found[peer] = {"1": found[peer]}
    for name, value in found.items():
        log(f"peer {name}: {json.dumps(value)[:300]}")
    return found


# --- 4. latency -------------------------------------------------------------------------------


def idle_workers(concurrency: int) -> WorkerProcesses:
    """Start ``concurrency`` workers and return once each is registered and waiting."""
    from rq import Worker

    from envoy_django.dispatch.rq_queue import get_queue

    handle = bench_workers()
    handle.start(concurrency)
    queue = get_queue()
    wait_until(lambda: len(Worker.all(queue=queue)) >= concurrency, 60, "workers to register")
    time.sleep(1.0)  # let the start-up sweep and imports settle
    return handle


STALL_SECONDS = 1.0


def latency_summary(values_s: list[float]) -> dict[str, Any]:
    """Percentiles over every sample, plus how many stalled (and the percentiles without them)."""
    summary = summarize_ms(values_s)
    fast = [v for v in values_s if v < STALL_SECONDS]
    summary["stalled"] = len(values_s) - len(fast)
    if summary["stalled"]:
        summary["without_stalls"] = summarize_ms(fast)
    return summary


def sample_one_at_a_time(n: int, gap: float, start: Callable[[int], str], finished: Callable[[str], bool]) -> None:
    """Start sample i, wait (up to STALL_SECONDS) until it is done, let the workers go idle, repeat.

    A sample that is not done in time is left to finish on its own (the
    sweep recovers stalled jobs) and collected at the end.
    """
    for i in range(n):
        key = start(i)
        deadline = time.monotonic() + STALL_SECONDS
        while not finished(key) and time.monotonic() < deadline:
            time.sleep(0.003)
        time.sleep(gap)


def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    from django.utils import timezone

    from envoy_django import scheduler
    from envoy_django.conf import envoy_settings
    from envoy_django.models import FINISHED_STATUSES, Escalation, Job, JobStatus, Step

    n = args.latency_samples
    gap = args.latency_gap
    recovery = envoy_settings.LEASE_SECONDS + 2 * envoy_settings.SWEEP_INTERVAL + 60
    results: dict[str, Any] = {"workers": 2, "gap_ms": gap * 1000, "stall_seconds": STALL_SECONDS,
                               "lease_seconds": envoy_settings.LEASE_SECONDS,
                               "sweep_interval": envoy_settings.SWEEP_INTERVAL}

    def finished(job_id: str) -> bool:
        return Job.objects.filter(pk=job_id, status__in=FINISHED_STATUSES).exists()

    reset_state()
    handle = idle_workers(2)
    try:
        # schedule() -> the first state starting (Step.started_at of the first step).
        calls: dict[str, tuple[dt.datetime, float]] = {}

        def schedule_one(i: int) -> str:
            called = timezone.now()
            t0 = time.perf_counter()
            job_id = scheduler.schedule("bench_one", i)
            calls[job_id] = (called, time.perf_counter() - t0)
            return job_id

        sample_one_at_a_time(n, gap, schedule_one, finished)
        wait_until(lambda: unfinished(list(calls)) == 0, recovery, "latency jobs to finish")
        first_step: dict[str, dt.datetime] = {}
        steps = Step.objects.filter(job_id__in=list(calls)).order_by("pk").values_list("job_id", "started_at")
        for job_id, started in steps:
            first_step.setdefault(str(job_id), started)
        claims = {str(j): s for j, s in Job.objects.filter(pk__in=list(calls)).values_list("pk", "started_at")}
        results["schedule_to_start"] = latency_summary(
            [(first_step[j] - called).total_seconds() for j, (called, _) in calls.items()])
        results["schedule_to_claim"] = latency_summary(
            [(claims[j] - called).total_seconds() for j, (called, _) in calls.items()])
        results["schedule_call"] = summarize_ms([took for _, took in calls.values()])
        # Where schedule -> start goes: row created, message id recorded (just before the push), claimed, state started.
        marks = {str(j): (c, e, s) for j, c, e, s in
                 Job.objects.filter(pk__in=list(calls)).values_list("pk", "created_at", "enqueued_at", "started_at")}
        legs: dict[str, list[float]] = {
            "call_to_row_created": [], "row_created_to_enqueue": [], "enqueue_to_claim": [], "claim_to_state_start": [],
        }
        for j, (called, _) in calls.items():
            created, enqueued, claimed = marks[j]
            if enqueued is None or claimed is None:
                continue
            legs["call_to_row_created"].append((created - called).total_seconds())
            legs["row_created_to_enqueue"].append((enqueued - created).total_seconds())
            legs["enqueue_to_claim"].append((claimed - enqueued).total_seconds())
            legs["claim_to_state_start"].append((first_step[j] - claimed).total_seconds())
        results["schedule_legs_p50_ms"] = {k: round(percentile(v, 0.5) * 1000, 2) for k, v in legs.items() if v}
        log(f"latency schedule->start: {results['schedule_to_start']}")

        # reply_to_escalation() -> the job resuming (Step.started_at of state Resume).
        reset_state_keep_workers()
        from django.contrib.auth.models import User

        User.objects.get_or_create(username="bench")  # whom bench_escalate asks: escalations need a real person
        ids = [scheduler.schedule("bench_escalate", i) for i in range(n)]
        wait_until(lambda: Job.objects.filter(pk__in=ids, status=JobStatus.BLOCKING).count() == n,
                   recovery + n * 0.1, "jobs to block on their escalations")
        escalations = list(Escalation.objects.filter(job_id__in=ids).values_list("pk", "job_id"))
        replied: dict[str, dt.datetime] = {}
        reply_calls = []

        def reply_one(i: int) -> str:
            escalation_id, job_id = escalations[i]
            called = timezone.now()
            t0 = time.perf_counter()
            scheduler.reply_to_escalation(escalation_id, {"ok": True}, "approved", user="bench")
            reply_calls.append(time.perf_counter() - t0)
            replied[str(job_id)] = called
            return str(job_id)

        sample_one_at_a_time(len(escalations), gap, reply_one, finished)
        wait_until(lambda: unfinished(ids) == 0, recovery, "escalated jobs to finish")
        resumed = {str(j): s for j, s in
                   Step.objects.filter(job_id__in=ids, state="Resume").values_list("job_id", "started_at")}
        results["reply_to_resume"] = latency_summary(
            [(resumed[j] - called).total_seconds() for j, called in replied.items()])
        results["reply_call"] = summarize_ms(reply_calls)
        log(f"latency reply->resume: {results['reply_to_resume']}")

        # A child finishing -> its parent resuming.
        reset_state_keep_workers()
        parents: list[str] = []

        def spawn_one(i: int) -> str:
            parents.append(scheduler.schedule("bench_parent", i))
            return parents[-1]

        sample_one_at_a_time(n, gap, spawn_one, finished)
        wait_until(lambda: unfinished() == 0, recovery, "parents and children to finish")
        child_end = dict(Job.objects.filter(parent_id__in=parents).values_list("parent_id", "finished_at"))
        resumed = dict(Step.objects.filter(job_id__in=parents, state="Resume").values_list("job_id", "started_at"))
        results["child_to_parent"] = latency_summary([(resumed[p] - child_end[p]).total_seconds() for p in child_end])
        log(f"latency child->parent: {results['child_to_parent']}")
    finally:
        handle.stop()
    return results


def reset_state_keep_workers() -> None:
    """Empty the tables between latency runs; workers keep running (Redis is left alone)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE envoy_django_step, envoy_django_wait, envoy_django_escalation, envoy_django_job CASCADE"
        )


# --- 6. worker memory --------------------------------------------------------------------------


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    from envoy_django.models import Job, JobStatus, Step

    reset_state()
    handle = bench_workers()
    supervisor = handle.start(1)
    samples = []
    worker_pid = 0
    try:
        total = 0
        for target in sorted(args.memory_jobs):
            ids, _, _ = schedule_batches("bench_one", target - total)
            total = target
            wait_until(lambda: unfinished() == 0, 600 + target * 0.05, f"{target} jobs to finish", interval=0.5)
            # The process that ran them, from the steps' lease owners ("host:pid:..."): one, the same each time.
            ran_in = {int(owner.split(":")[1]) for owner in Step.objects.values_list("worker", flat=True).distinct()}
            if len(ran_in) != 1 or (worker_pid and ran_in != {worker_pid}):
                raise RuntimeError(f"the jobs ran in processes {sorted(ran_in)}, not in one worker process")
            (worker_pid,) = ran_in
            if worker_pid not in child_pids(supervisor.pid):
                raise RuntimeError(f"worker process {worker_pid} is gone: it was replaced during the memory run")
            done = Job.objects.filter(status=JobStatus.DONE).count()
            sample = {"jobs": done, **rss_kb(worker_pid)}
            samples.append(sample)
            log(f"worker {worker_pid} after {done} jobs: VmRSS {sample.get('VmRSS')} kB")
    finally:
        handle.stop()
    first, last = samples[0]["VmRSS"], samples[-1]["VmRSS"]
    return {"worker_pid": worker_pid, "samples": samples, "growth_pct": round((last - first) / first * 100, 1)}


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        from bench import report

        out = Path(args.out)
        results = json.loads((out / "results.json").read_text())
        write_outputs(results, out)
        print(report.console_table(results))
        return 0
    require_services()
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ.setdefault("ENVOY_BENCH_DB", "envoy_bench_smoke" if args.smoke else "envoy_bench")
    db_name = os.environ["ENVOY_BENCH_DB"]
    log(f"preparing database {db_name} and Redis DB (bench/settings.py)")
    recreate_database(db_name)

    import django

    django.setup()
    redis_conn().flushdb()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {"machine": machine_info(), "args": {
        k: v for k, v in vars(args).items() if k not in ("out",)}}
    load = LoadWatch()
    results["load"] = load.phases
    log(f"machine: {results['machine']['nproc']} CPUs, {results['machine']['cpu']}, "
        f"load {os.getloadavg()[0]:.2f}")

    runners = {"ceiling": bench_ceiling, "rq": bench_raw_rq, "envoy": bench_envoy, "peers": bench_peers}
    throughput = [phase for phase in runners if phase in args.only or (phase == "peers" and args.peers)]
    # Throughput phases run in interleaved rounds, so that a burst of load from
    # elsewhere on the machine hits one round of each rather than one phase.
    rounds: dict[str, list[dict]] = {phase: [] for phase in throughput}
    for number in range(1, args.rounds + 1):
        for phase in throughput:
            label = f"{phase} (round {number} of {args.rounds})"
            log(f"--- {label}")
            load.start(label)
            rounds[phase].append(run_with_retry(runners[phase], args, label, results))
            load.end(label)
            results[phase] = merge_rounds(rounds[phase])
            write_outputs(results, out)
    for phase, runner in (("latency", bench_latency), ("memory", bench_memory), ("scale", None),
                          ("retention", None)):
        if phase not in args.only or (phase == "scale" and args.scale_jobs <= 0) or (
                phase == "retention" and args.purge_jobs <= 0):
            continue
        log(f"--- {phase}")
        load.start(phase)
        if phase == "scale":
            from bench import scale

            results["scale"] = scale.run(args, log)
        elif phase == "retention":
            from bench import retention

            results["retention"] = retention.run(args, log)
        else:
            results[phase] = runner(args)
        load.end(phase)
        write_outputs(results, out)

    if args.profile:
        from bench import profile

        log("--- profile")
        load.start("profile")
        results["profile"] = profile.run_profile(args, out, log)
        load.end("profile")
        write_outputs(results, out)

    from bench import report

    print()
    print(report.console_table(results))
    write_outputs(results, out)
    log(f"results: {out / 'results.json'}, {out / 'results.md'}, {out / 'throughput.png'}")
    return 0


def run_with_retry(runner: Callable[[argparse.Namespace], dict], args: argparse.Namespace, label: str,
                   results: dict[str, Any]) -> dict:
    """Run a throughput phase; once more if it failed (e.g. a FLUSHALL on a shared Redis server).

    Every failure is kept in results["incidents"] and shown in results.md.
    """
    try:
        return runner(args)
    except Exception as exc:  # noqa: BLE001 - recorded, then retried once
        results.setdefault("incidents", []).append(f"{time.strftime('%H:%M:%S')} {label}: {type(exc).__name__}: {exc}")
        log(f"{label} failed ({exc}); running it again")
        return runner(args)


RATE_KEYS = ("tps", "jobs_per_s", "transitions_per_s", "steps_per_s")


def merge_rounds(rounds: list[Any]) -> Any:
    """The median of each number across rounds; rates also keep every round's value."""
    first = rounds[0]
    if isinstance(first, dict):
        merged = {}
        for key in first:
            values = [r[key] for r in rounds if key in r]
            merged[key] = merge_rounds(values)
            if key in RATE_KEYS:
                merged[key + "_rounds"] = values
        return merged
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return round(statistics.median(rounds), 3)
    return first


def write_outputs(results: dict[str, Any], out: Path) -> None:
    from bench import report

    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(report.markdown(results))
    report.chart(results, out / "throughput.png")


if __name__ == "__main__":
    sys.exit(main())
