"""Peer systems measured on the same PostgreSQL as envoy (``make bench BENCH_ARGS=--peers``).

Why: envoy's throughput number (bench_ten, ten no-op states, one committed
checkpoint per transition) means little alone. The question is how it
compares with the durable-workflow tools people would use instead, on the
same server and the same disk, and how far it sits from what PostgreSQL
itself allows. So ``run_peers`` runs:

- **pgbench** (``pgbench.py``): the physical ceiling. pgbench's C clients
  loop envoy's own checkpoint (the fenced UPDATE of the job row and the
  INSERT of a Step row, with a real transition's JSON) against envoy's
  tables in the bench database, once as envoy commits it today
  (BEGIN/UPDATE/INSERT/END) and once as a single autocommitted statement.
- **LangGraph** (``langgraph_run.py``): a 10-node no-op StateGraph,
  S0 -> ... -> S9 -> END, compiled with ``PostgresSaver`` and invoked with
  ``durability="sync"`` (each step's checkpoint written before the next
  step), in the database ``envoy_bench_peer_langgraph``.
- **DBOS** (``dbos_run.py``): one ``@DBOS.workflow()`` calling ten
  ``@DBOS.step()`` no-ops (each step's output committed before the next
  step), in the database ``envoy_bench_peer_dbos``.

LangGraph and DBOS run sequentially in one process each, as envoy's
one-worker number does, and are reported as steps/s (workflows x 10 / s).
They run in their own virtualenv, ``bench/.venv-peers`` (``venv.py``), so
their dependencies never enter the project's; their scripts run as
subprocesses of that venv's python and print one JSON line. Their databases
are recreated before and dropped after each run; only names starting with
``envoy_bench_peer`` are ever touched.

Nothing here imports Django or envoy_django: the caller, bench/run.py, owns
the envoy side.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from .pgbench import run_pgbench
from .venv import PEERS_DIR, ensure_venv

__all__ = ["run_peers"]

DB_PREFIX = "envoy_bench_peer"
WARMUP = 5
_FOREIGN_ENV = ("LANGSMITH_", "LANGCHAIN_", "DBOS")


def run_peers(*, jobs: int, clients: list[int], admin_dsn: str, envoy_dsn: str,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Run pgbench, LangGraph and DBOS; a peer that cannot run comes back as ``{"skipped": reason}``.

    ``admin_dsn`` may CREATE/DROP DATABASE; ``envoy_dsn`` is the migrated bench
    database, whose envoy tables pgbench writes to (its rows are deleted
    afterwards, the tables kept). ``jobs`` is the number of 10-step workflows
    each of LangGraph and DBOS runs after a warm-up; it also sets pgbench's
    duration (5 s per run up to 500 jobs, 15 s above). ``clients`` are
    pgbench's client counts.
    """
    results: dict[str, Any] = {}
    results["pgbench"] = _guard("pgbench", log, lambda: run_pgbench(
        jobs=jobs, clients=clients, envoy_dsn=envoy_dsn, log=log))

    try:
        python: Path | None = ensure_venv(log)
        venv_error = ""
    except Exception as exc:
        python, venv_error = None, _one_line(exc)
        log(f"peers: no venv, LangGraph and DBOS skipped: {venv_error}")

    for name, script, database in [
        ("langgraph", "langgraph_run.py", f"{DB_PREFIX}_langgraph"),
        ("dbos", "dbos_run.py", f"{DB_PREFIX}_dbos"),
    ]:
        if python is None:
            results[name] = {"skipped": f"peers venv unavailable: {venv_error}"}
            continue
        results[name] = _guard(name, log, lambda script=script, database=database: _run_script(
            python, script, admin_dsn, database, jobs))
        if "steps_per_s" in results[name]:
            log(f"{name}: {results[name]['steps_per_s']:.0f} steps/s ({jobs} workflows)")
    return results


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _guard(name: str, log: Callable[[str], None], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A peer's failure is reported in its place, not raised: the envoy numbers must still be written."""
    try:
        return run()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {_one_line(exc)}"
        log(f"{name} skipped: {reason}")
        return {"skipped": reason}


def _recreate_database(admin_dsn: str, name: str, *, create: bool = True) -> str:
    """Drop database ``name`` (and create it again unless ``create`` is false); return its DSN."""
    if not name.startswith(DB_PREFIX):
        raise ValueError(f"refusing to touch database {name!r}: peers only use {DB_PREFIX}*")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
    return conninfo.make_conninfo(admin_dsn, dbname=name)


def _run_script(python: Path, script: str, admin_dsn: str, database: str, jobs: int) -> dict[str, Any]:
    """Run one peer script in the peers venv on a fresh database; return the JSON line it printed."""
    dsn = _recreate_database(admin_dsn, database)
    # The DSN goes through the environment, not argv, so a password never shows in ps. PYTHONPATH and
    # VIRTUAL_ENV are the caller's: the peers venv must see only its own packages. LANGSMITH_*/LANGCHAIN_*
    # (tracing) and DBOS* (cloud, conductor) are dropped so the peers reach nothing but PostgreSQL.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith(_FOREIGN_ENV)}
    env["BENCH_PEER_DSN"] = dsn
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as cwd:
            began = time.monotonic()
            proc = subprocess.run(
                [str(python), str(PEERS_DIR / script), "--jobs", str(jobs), "--warmup", str(WARMUP)],
                capture_output=True, text=True, env=env, cwd=cwd, timeout=max(900, jobs),
            )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise RuntimeError(f"{script} failed after {time.monotonic() - began:.0f} s: {tail[0]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"{script} printed no result")
        return json.loads(lines[-1])
    finally:
        with contextlib.suppress(psycopg.Error):  # never hide the run's own error behind the cleanup's
            _recreate_database(admin_dsn, database, create=False)
