"""Retention at scale: ``envoy_purge`` on a generated dataset while the sweep and row locks go on.

The dataset is the scale phase's (bench/scale.py), ``--purge-jobs`` jobs
(default 100,000, about 5 Step rows each), generated afresh in its own
database ``<ENVOY_BENCH_DB>_purge`` because the purge deletes it. While
``purge_finished("1d")`` deletes every finished job in batches, a second
thread keeps doing what workers and operators do: a recovery sweep, then
20 short transactions each locking a random job row. Reported: how long
each purge batch held its locks, and the longest any of the others waited.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

LONG_LOCK_S = 1.0  # a wait this long on a row the purge holds would be felt by a worker or a person


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    from bench import scale
    from bench.run import libpq_dsn, recreate_database
    from bench.settings import bench_db_name

    name = f"{bench_db_name()}_purge"
    recreate_database(name)
    dataset = argparse.Namespace(scale_jobs=args.purge_jobs, regenerate=True)
    info = scale.ensure_dataset(libpq_dsn(name), dataset, log)
    with scale.using_database(name):
        result = _purge_under_load(log)
    return {"jobs": info["jobs"], "steps": info["steps"], "database": name, **result}


def _purge_under_load(log: Callable[[str], None]) -> dict[str, Any]:
    from django.db import connection, transaction

    from envoy_django.models import Job
    from envoy_django.scheduler import retention
    from envoy_django.scheduler.sweep import cleanup_orphaned_jobs

    batches: list[float] = []
    original = retention._batch

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            batches.append(time.perf_counter() - began)

    ids = list(Job.objects.values_list("pk", flat=True)[:20000])
    stop = threading.Event()
    sweeps: list[float] = []
    locks: list[float] = []

    def meanwhile() -> None:
        try:
            while not stop.is_set():
                began = time.perf_counter()
                cleanup_orphaned_jobs()
                sweeps.append(time.perf_counter() - began)
                for _ in range(20):
                    began = time.perf_counter()
                    with transaction.atomic():
                        list(Job.objects.select_for_update().filter(pk=random.choice(ids)).values_list("pk"))
                    locks.append(time.perf_counter() - began)
        finally:
            connection.close()

    retention._batch = timed  # type: ignore[assignment]
    other = threading.Thread(target=meanwhile)
    other.start()
    began = time.perf_counter()
    try:
        purged = retention.purge_finished("1d")
    finally:
        seconds = time.perf_counter() - began
        stop.set()
        other.join()
        retention._batch = original  # type: ignore[assignment]
    result = {
        "purged_jobs": purged.jobs,
        "kept": purged.skipped,
        "seconds": round(seconds, 2),
        "jobs_per_s": round(purged.jobs / seconds, 1) if seconds else None,
        "batches": len(batches),
        "batch_p50_ms": round(statistics.median(batches) * 1000, 1) if batches else None,
        "batch_max_ms": round(max(batches) * 1000, 1) if batches else None,
        "sweeps": len(sweeps),
        "sweep_max_ms": round(max(sweeps) * 1000, 1) if sweeps else None,
        "row_locks": len(locks),
        "row_lock_p50_ms": round(statistics.median(locks) * 1000, 2) if locks else None,
        "row_lock_max_ms": round(max(locks) * 1000, 1) if locks else None,
        "left": Job.objects.count(),
    }
    log(f"retention: {result}")
    return result
