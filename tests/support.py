"""Helpers several test modules share (the worker processes and ``wait_until`` are in envoy_django.testing)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
# Worker processes in tests: a short lease and sweep, so recovery is quick to observe.
LEASE_SECONDS = 2.0
SWEEP_INTERVAL = 0.5
RQ_ENVOY = {
    "EXECUTION": "rq",
    "RETRY_BACKOFF": 0.01,
    "RETRY_BACKOFF_MAX": 0.05,
    "LEASE_SECONDS": LEASE_SECONDS,
    "SWEEP_INTERVAL": SWEEP_INTERVAL,
    "METRICS": True,
    "METRICS_TOKEN": "test-metrics-token-0123456789",
}


def worker_env(execution: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process: this test's database, a short lease and sweep."""
    return {
        **os.environ,
        "ENVOY_TEST_DB_NAME": connection.settings_dict["NAME"],
        "ENVOY_TEST_EXECUTION": execution,
        "ENVOY_TEST_LEASE_SECONDS": str(LEASE_SECONDS),
        "ENVOY_TEST_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
        **extra,
    }


def close_thread_connection() -> None:
    """Close this thread's database connection, for real even on the in-memory SQLite of the laptop fallback.

    Django leaves an in-memory database's connection open on ``close()``
    (closing the last one would drop the database); a thread's own is not
    the last one, and left open it is reported as a ResourceWarning later.
    """
    from django.db.backends.base.base import BaseDatabaseWrapper

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        BaseDatabaseWrapper.close(connection)
    else:
        connection.close()


def in_threads(*calls: Callable[[], Any], timeout: float = 120.0) -> list[Any]:
    """Run each call in a thread of its own, all released at once; their results, in order.

    The race a user meets with two browser tabs or two processes: every
    thread waits at a barrier, then calls. An exception in any thread fails
    the caller. Each thread closes its own database connection.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = call()
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if errors:
        raise errors[0]
    return results


def run_in_one_state(name: str, state: str, handler: Callable[[Any], Any]) -> Any:
    """Register a one-state flow around ``handler`` for one call, schedule it ("immediate" mode); its job."""
    from envoy_django import StateFlow, register, scheduler
    from envoy_django.registry import unregister

    register(name, StateFlow([{"name": state, "on_state": handler}]))
    try:
        return scheduler.get_job(scheduler.schedule(name))
    finally:
        unregister(name)
