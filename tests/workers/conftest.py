"""Real ``envoy_worker`` processes against the test database and a clean Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from django.db import connection
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2.0
SWEEP_INTERVAL = 0.5
RQ_ENVOY = {
    "EXECUTION": "rq",
    "RETRY_BACKOFF": 0.01,
    "RETRY_BACKOFF_MAX": 0.05,
    "LEASE_SECONDS": LEASE_SECONDS,
    "SWEEP_INTERVAL": SWEEP_INTERVAL,
}


def wait_until(predicate: Callable[[], bool], timeout: float = 90.0, what: str = "condition") -> None:
    """Poll with a generous deadline: worker processes on 2 cores can be slow."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class Workers:
    """Starts and stops ``manage.py envoy_worker`` supervisors."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[subprocess.Popen] = []

    def start(self, concurrency: int = 1, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "envoy_worker", "--concurrency", str(concurrency),
             "--settings", "tests.settings", "-v", "0"],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            start_new_session=True,  # so stop() can end the supervisor's workers with it
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # anything of it still alive, orphans included
            except ProcessLookupError:
                pass
            process.wait()


@pytest.fixture
def workers(redis_conn, transactional_db):
    """Worker supervisors on the test database; the test itself schedules in rq mode."""
    env = {
        **os.environ,
        "ENVOY_TEST_DB_NAME": connection.settings_dict["NAME"],
        "ENVOY_TEST_EXECUTION": "rq",
        "ENVOY_TEST_LEASE_SECONDS": str(LEASE_SECONDS),
        "ENVOY_TEST_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
    }
    handle = Workers(env)
    with override_settings(ENVOY=RQ_ENVOY):
        try:
            yield handle
        finally:
            handle.stop()
