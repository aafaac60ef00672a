"""Where a worker's time goes (``--profile``).

1. py-spy samples one ``envoy_worker`` child process (wall clock, idle
   included) while it drains 1-state and 10-state jobs; the samples are
   grouped by what the process was doing (claim, checkpoint statement,
   RQ bookkeeping, the flow engine).
2. In-process micro-benchmarks, interleaved over rounds, on the same tables:
   - one transition's checkpoint: raw psycopg (the ceiling's loop), the
     Django ORM in ``atomic()`` (fenced UPDATE + Step INSERT: how the
     executor wrote it before the one-statement checkpoint, for
     comparison), and the executor itself (``run_job``, no RQ);
   - 1-state jobs through an in-process RQ worker.

Nothing in envoy_django is changed; the comparison variants are written
out here.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

CATEGORIES = [
    ("claim (one statement, or the locking fallback)", ["claim ("]),
    ("checkpoint statement (job row + Step, one round trip)", ["Held.advance"]),
    ("commit, other (waits, ends, signals)", ["_Run._commit"]),
    ("flow engine (flow.advance)", ["StateFlow.advance"]),
    ("executor, other (load context, payload checks)", ["run_job ("]),
    ("envoy perform(), other", ["perform (envoy_django"]),
    ("RQ: fetch next job (BLPOP/LPOP, job hash)", ["dequeue_job_and_maintain_ttl"]),
    ("RQ: job success bookkeeping (registries, delete)", ["handle_job_success"]),
    ("RQ: prepare job execution", ["prepare_job_execution"]),
    ("RQ: other per-job work", ["execute_job"]),
    ("RQ worker loop, other", ["work ("]),
]
OTHER_THREADS = ("Heartbeat.run", "Thread._bootstrap")


def categorize(raw: str) -> tuple[int, list[tuple[str, float]]]:
    """Group py-spy's raw (collapsed) stacks of the main thread by category; percentages."""
    counts: Counter = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit() or any(marker in stack for marker in OTHER_THREADS):
            continue
        n = int(count)
        total += n
        for label, keys in CATEGORIES:
            if all(key in stack for key in keys):
                counts[label] += n
                break
        else:
            counts["other (truncated stacks, misc.)"] += n
    return total, [(label, round(100 * n / total, 1)) for label, n in counts.most_common()] if total else []


def spy_worker(flow: str, jobs: int, out: Path, seconds: int, log: Callable[[str], None]) -> dict[str, Any]:
    from bench import run

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    run.reset_state()
    run.schedule_batches(flow, jobs)
    handle = run.Workers()
    supervisor = handle.start(1, burst=True)
    try:
        run.wait_until(lambda: len(run.child_pids(supervisor.pid)) >= 1, 60, "the worker process")
        child = run.child_pids(supervisor.pid)[0]
        time.sleep(1.0)  # past start-up
        with tempfile.TemporaryDirectory() as tmp:
            raw_path = Path(tmp) / "raw.txt"
            subprocess.run([pyspy, "record", "--pid", str(child), "--duration", str(seconds), "--rate", "250",
                            "--idle", "--nonblocking", "--format", "raw", "--output", str(raw_path)],
                           check=True, capture_output=True)
            raw = raw_path.read_text()
        supervisor.wait(timeout=3600)
    finally:
        handle.stop()
    (out / f"profile-{flow}.txt").write_text(top_stacks(raw))
    total, shares = categorize(raw)
    log(f"py-spy {flow}: {total} samples; " + ", ".join(f"{label} {share}%" for label, share in shares[:4]))
    return {"flow": flow, "samples": total, "shares": shares, "raw": f"profile-{flow}.txt"}


def top_stacks(raw: str, limit: int = 60) -> str:
    """The most sampled stacks of the main thread, from ``perform`` down, file paths dropped."""
    counts: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit() or any(marker in stack for marker in OTHER_THREADS):
            continue
        frames = [re.sub(r" \((.*/)?([^/]+?\.py):\d+\)$", r" (\2)", f) for f in stack.split(";")]
        start = next((i for i, f in enumerate(frames) if f.startswith("Worker.execute_job")
                      or f.startswith("SimpleWorker.execute_job")), None)
        if start is None:
            start = next((i for i, f in enumerate(frames) if f.startswith("Worker.work")), 0)
        counts[";".join(frames[start:])] += int(count)
    total = sum(counts.values()) or 1
    lines = [f"# py-spy (wall clock, idle included): the {limit} most sampled stacks of the worker's main thread,",
             "# from RQ's execute_job (or its work loop) down; share of samples, then the stack.", ""]
    for stack, n in counts.most_common(limit):
        lines.append(f"{100 * n / total:5.1f}%  {stack}")
    return "\n".join(lines) + "\n"


# --- micro-benchmarks -----------------------------------------------------------------------


def checkpoint_variants(jobs: int) -> dict[str, Callable[[], float]]:
    """Each returns transitions per second for ``jobs`` x 10 checkpoints on fresh rows."""
    import psycopg
    from django.db import transaction
    from django.utils import timezone

    from bench import checkpoint, run
    from bench.settings import bench_db_name
    from envoy_django import scheduler
    from envoy_django.dispatch.rq_queue import RQDispatcher
    from envoy_django.models import Job, Step
    from envoy_django.scheduler.executor import run_job

    payloads = run.checkpoint_payloads()
    owner = checkpoint.OWNER

    def raw_psycopg() -> float:
        run.reset_state()
        ids = run.make_running_jobs(jobs)
        conn = psycopg.connect(run.libpq_dsn(bench_db_name()), autocommit=False)
        began = time.perf_counter()
        for job_id in ids:
            for number, payload in enumerate(payloads, 1):
                checkpoint.commit_checkpoint(conn, job_id, number, payload)
        elapsed = time.perf_counter() - began
        conn.close()
        return len(ids) * len(payloads) / elapsed

    def django_orm() -> float:
        run.reset_state()
        ids = run.make_running_jobs(jobs)
        began = time.perf_counter()
        for job_id in ids:
            for number, p in enumerate(payloads, 1):
                now = timezone.now()
                with transaction.atomic():
                    updated = Job.objects.filter(pk=job_id, lease_owner=owner, status="running").update(
                        context=p["context"], state=p["job_state"], step=p["job_step"], output=p["output"],
                        attempts=0, updated_at=now, lease_expires_at=now + dt.timedelta(seconds=30))
                    assert updated == 1
                    Step.objects.create(job_id=job_id, number=number, state=p["step_state"], phase=p["phase"],
                                        next_state=p["next_state"], attempt=1, input=p["input"], output=p["output"],
                                        worker=owner, started_at=now, finished_at=now)
        return len(ids) * len(payloads) / (time.perf_counter() - began)

    def executor() -> float:
        run.reset_state()
        original = RQDispatcher.enqueue
        RQDispatcher.enqueue = lambda self, jobs: None  # type: ignore[method-assign]  # rows only
        try:
            ids = [scheduler.schedule("bench_ten") for _ in range(jobs)]
        finally:
            RQDispatcher.enqueue = original  # type: ignore[method-assign]
        began = time.perf_counter()
        for job_id in ids:
            run_job(job_id)
        elapsed = time.perf_counter() - began
        assert Step.objects.count() == jobs * 10
        return jobs * 10 / elapsed

    return {
        "checkpoint: raw psycopg (the ceiling's loop)": raw_psycopg,
        "checkpoint: Django ORM in atomic() (UPDATE + INSERT, for comparison)": django_orm,
        "executor: run_job() on 10-state jobs, no RQ (one statement per transition)": executor,
    }


def claim_variants(jobs: int) -> dict[str, Callable[[], float]]:
    """1-state jobs per second through an in-process RQ worker."""
    from bench import run
    from envoy_django.models import Job, JobStatus
    from envoy_django.worker import get_worker

    def drain() -> float:
        run.reset_state()
        run.schedule_batches("bench_one", jobs)
        worker = get_worker()
        began = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
        elapsed = time.perf_counter() - began
        assert Job.objects.filter(status=JobStatus.DONE).count() == jobs
        return jobs / elapsed

    return {"1-state jobs, in-process RQ worker": drain}


def micro(rounds: int, jobs: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    variants = {**checkpoint_variants(jobs), **claim_variants(jobs * 3)}
    values: dict[str, list[float]] = {name: [] for name in variants}
    for number in range(rounds):
        for name, fn in variants.items():
            values[name].append(fn())
        log(f"micro round {number + 1}: " + ", ".join(f"{re.sub(r'[^a-z0-9]+', ' ', k.lower())[:30]}={v[-1]:.0f}"
                                                       for k, v in values.items()))
    return [{"name": name, "per_s": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v]}
            for name, v in values.items()]


def run_profile(args: Any, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    jobs = max(args.jobs, 2000)
    return {
        "spy": [spy_worker("bench_one", jobs * 2, out, 10, log), spy_worker("bench_ten", jobs // 2, out, 10, log)],
        "micro": micro(args.rounds, 100, log),
    }


def markdown(profile: dict[str, Any]) -> list[str]:
    out = ["## Profile (`--profile`)", ""]
    for spy in profile.get("spy", []):
        if spy.get("skipped"):
            out += [f"- py-spy: {spy['skipped']}", ""]
            continue
        out.append(f"py-spy on one `envoy_worker` child draining `{spy['flow']}` jobs: {spy['samples']} samples of the "
                   f"main thread, wall clock (idle included); raw stacks in `{spy['raw']}`.")
        out.append("")
        out.append("| where the worker's time goes | share |")
        out.append("|---|---:|")
        for label, share in spy["shares"]:
            out.append(f"| {label} | {share}% |")
        out.append("")
    if profile.get("micro"):
        out.append("In-process micro-benchmarks (median of the rounds; same tables, same payloads):")
        out.append("")
        out.append("| variant | per second | rounds |")
        out.append("|---|---:|---|")
        for row in profile["micro"]:
            out.append(f"| {row['name']} | {row['per_s']:,.0f} | {', '.join(f'{v:,.0f}' for v in row['rounds'])} |")
        out.append("")
    return out
