"""Real worker processes for tests, benchmarks and chaos runs, and the one way to wait for them.

``WorkerProcesses`` starts ``manage.py envoy_worker`` supervisors, each in
a session of its own, and stops them the way an operator would (SIGTERM,
a warm shutdown) before killing whatever of them is left, orphans
included. ``wait_until`` polls with a deadline: with worker processes on a
busy machine, a fixed sleep is either too short (a flaky test) or too long.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 90.0, what: str = "condition",
               interval: float = 0.02, max_interval: float = 0.5) -> T:
    """Poll ``predicate`` until it returns something truthy (and return it), or raise naming ``what``.

    The interval grows from ``interval`` to ``max_interval``: quick to notice,
    cheap to keep asking.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)


class WorkerProcesses:
    """``envoy_worker`` supervisors on the given Django settings module, started in ``cwd``.

    ``env`` is the environment of every supervisor (``extra_env`` adds to it
    per start); with ``log_dir``, each writes to ``<name>.log`` there.
    """

    def __init__(self, settings: str, *, cwd: Path, env: Mapping[str, str] | None = None,
                 log_dir: Path | None = None) -> None:
        self.settings = settings
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[Any]] = []

    def start(self, concurrency: int = 1, *, burst: bool = False, verbosity: int = 0,
              extra_env: Mapping[str, str] | None = None, name: str | None = None,
              queues: Sequence[str] = ()) -> subprocess.Popen[Any]:
        command = [sys.executable, "-m", "django", "envoy_worker", "--concurrency", str(concurrency),
                   "--settings", self.settings, "-v", str(verbosity)]
        for queue in queues:
            command += ["--queue", queue]
        if burst:
            command.append("--burst")
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            out = open(self.log_dir / f"{name or f'supervisor-{len(self.processes) + 1}'}.log", "ab")
        try:
            process = subprocess.Popen(
                command, cwd=self.cwd, env={**self.env, **(extra_env or {})}, stdout=out,
                stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
                start_new_session=True,  # so stop() can end the supervisor's workers with it
            )
        finally:
            if out is not None:
                out.close()
        self.processes.append(process)
        return process

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM each supervisor (a warm shutdown), wait, then kill what is left of each process group."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            kill_group(process.pid)
            process.wait()
        self.processes = []


def kill_group(pid: int) -> None:
    """SIGKILL every process of the session ``pid`` leads (its workers, orphans included)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
