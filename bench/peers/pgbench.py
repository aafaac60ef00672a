"""pgbench on envoy's own tables: the physical ceiling of envoy's checkpoint.

Each pgbench client owns one running job row (leased to ``bench-ceiling``,
as ``bench/run.py`` ``make_running_jobs`` makes them) and loops the writes
envoy commits per transition (``bench/checkpoint.py``): the fenced UPDATE of
the job row and the INSERT of one Step row, with the JSON of a real bench_ten
transition. Two shapes:

- ``transaction``: BEGIN; UPDATE; INSERT; END; -- what envoy commits today;
- ``one_statement``: the same writes as one autocommitted statement
  (``WITH fenced AS (UPDATE ... RETURNING id) INSERT ... SELECT``), which saves
  the round trips of BEGIN and END: how much a checkpoint could still gain.

pgbench is C with prepared statements, so its tps is what PostgreSQL and the
disk allow on this machine, with no Python, ORM or queue in the way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

OWNER = "bench-ceiling"  # bench/checkpoint.py OWNER: the lease owner the fenced UPDATE matches
MAP_TABLE = "bench_pgbench_jobs"

# bench/run.py checkpoint_payloads() for bench_ten's fifth transition (S4 -> S5): the context
# envoy serializes, the job columns it sets and the Step row it inserts.
PAYLOAD: dict[str, Any] = {
    "context": {"version": 1, "state": "S5", "phase": "state", "step": 6, "input": 5, "output": 5, "data": {},
                "done": None, "error": None, "waits": {}, "progress": None, "notes": []},
    "job_state": "S5",
    "job_step": 6,
    "step_state": "S4",
    "phase": "state",
    "next_state": "S5",
    "input": 4,
    "output": 5,
}

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _jsonb(value: Any) -> str:
    return _literal(json.dumps(value)) + "::jsonb"


_JOB_ID = f"(SELECT job_id FROM {MAP_TABLE} WHERE client = :client_id)"
_SET = (
    f"context = {_jsonb(PAYLOAD['context'])}, state = {_literal(PAYLOAD['job_state'])}, step = {PAYLOAD['job_step']}, "
    f"output = {_jsonb(PAYLOAD['output'])}, attempts = 0, updated_at = now(), "
    "lease_expires_at = now() + interval '30 s'"
)
_FENCE = f"lease_owner = {_literal(OWNER)} AND status = 'running'"
_STEP_COLUMNS = (
    "job_id, number, state, phase, next_state, attempt, input, output, error, traceback, notes, worker, "
    "started_at, finished_at"
)
# Step.number comes from :n, a per-client counter (pgbench keeps variables across transactions; -D n=0
# starts it), because envoy_step_once makes (job_id, number, phase) unique.
_STEP_VALUES = (
    f":n, {_literal(PAYLOAD['step_state'])}, {_literal(PAYLOAD['phase'])}, {_literal(PAYLOAD['next_state'])}, 1, "
    f"{_jsonb(PAYLOAD['input'])}, {_jsonb(PAYLOAD['output'])}, '', '', '[]'::jsonb, {_literal(OWNER)}, now(), now()"
)

SCRIPTS: dict[str, str] = {
    "transaction": (
        "\\set n :n + 1\n"
        "BEGIN;\n"
        f"UPDATE envoy_django_job SET {_SET} WHERE id = {_JOB_ID} AND {_FENCE};\n"
        f"INSERT INTO envoy_django_step ({_STEP_COLUMNS}) VALUES ({_JOB_ID}, {_STEP_VALUES}) RETURNING id;\n"
        "END;\n"
    ),
    "one_statement": (
        "\\set n :n + 1\n"
        f"WITH fenced AS (UPDATE envoy_django_job SET {_SET} WHERE id = {_JOB_ID} AND {_FENCE} RETURNING id) "
        f"INSERT INTO envoy_django_step ({_STEP_COLUMNS}) SELECT fenced.id, {_STEP_VALUES} FROM fenced RETURNING id;\n"
    ),
}


def pgbench_binary() -> str | None:
    return shutil.which("pgbench") or ("/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None)


def _make_jobs(conn: psycopg.Connection, clients: int) -> list[str]:
    """Fresh running job rows, one per client, mapped in bench_pgbench_jobs (client ids are pgbench's, from 0)."""
    conn.execute(f"TRUNCATE {MAP_TABLE}")
    rows = conn.execute(
        "INSERT INTO envoy_django_job (id, flow, status, state, step, max_steps, context, error, error_type, "
        "traceback, parent_wait_id, attempts, claims, progress_message, lease_owner, lease_expires_at, "
        "created_at, updated_at, started_at) "
        "SELECT gen_random_uuid(), 'bench_ten', 'running', 'S0', 1, 25, '{}'::jsonb, '', '', '', '', 0, 0, '', "
        "%s, now() + interval '30 s', now(), now(), now() FROM generate_series(1, %s) RETURNING id",
        (OWNER, clients),
    ).fetchall()
    job_ids = [str(row[0]) for row in rows]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {MAP_TABLE} (client, job_id) VALUES (%s, %s)", list(enumerate(job_ids)))
    return job_ids


def _drop_jobs(conn: psycopg.Connection, job_ids: list[str]) -> None:
    if job_ids:
        conn.execute("DELETE FROM envoy_django_step WHERE job_id = ANY(%s::uuid[])", (job_ids,))
        conn.execute("DELETE FROM envoy_django_job WHERE id = ANY(%s::uuid[])", (job_ids,))


def _pgbench(binary: str, dsn: str, script: Path, clients: int, seconds: int) -> dict[str, Any]:
    # A password goes through PGPASSWORD, not argv, so it never shows in ps.
    params = conninfo.conninfo_to_dict(dsn)
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = str(params.pop("password"))
    cmd = [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients), "-T", str(seconds),
           "-D", "n=0", "-f", str(script), conninfo.make_conninfo(**params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
    tps = _TPS.search(proc.stdout)
    processed = _PROCESSED.search(proc.stdout)
    # pgbench exits 2 when a client aborted (a failed statement): its numbers are then incomplete.
    if proc.returncode != 0 or not tps or not processed:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(f"pgbench exited {proc.returncode}: {' | '.join(tail)}")
    rate = float(tps.group(1))
    transactions = int(processed.group(1))
    return {"tps": round(rate, 1), "seconds": round(transactions / rate, 3) if rate else 0.0,
            "transactions": transactions}


def run_pgbench(*, jobs: int, clients: list[int], envoy_dsn: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Both scripts at each client count; the helper table and every row written are removed at the end."""
    binary = pgbench_binary()
    if binary is None:
        return {"skipped": "pgbench not found on PATH"}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    seconds = 5 if jobs <= 500 else 15
    results: dict[str, Any] = {"version": version}
    job_ids: list[str] = []
    with (psycopg.connect(envoy_dsn, autocommit=True) as conn,
          tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp):
        conn.execute(f"DROP TABLE IF EXISTS {MAP_TABLE}")
        conn.execute(f"CREATE TABLE {MAP_TABLE} (client int PRIMARY KEY, job_id uuid NOT NULL)")
        try:
            for name, text in SCRIPTS.items():
                script = Path(tmp) / f"{name}.sql"
                script.write_text(text)
                results[name] = {}
                for count in clients:
                    # Fresh rows per run: the previous run's thousands of dead versions of the same few rows
                    # (and its Step rows) would otherwise weigh on the next one.
                    _drop_jobs(conn, job_ids)
                    job_ids = _make_jobs(conn, count)
                    run = _pgbench(binary, envoy_dsn, script, count, seconds)
                    steps = conn.execute("SELECT count(*) FROM envoy_django_step WHERE job_id = ANY(%s::uuid[])",
                                         (job_ids,)).fetchone()
                    # Every counted transaction must have written its Step row (the fence matched).
                    if steps is None or steps[0] < run["transactions"]:
                        raise RuntimeError(f"pgbench {name}: {run['transactions']} transactions but "
                                           f"{steps[0] if steps else 0} Step rows: the fenced UPDATE did not match")
                    results[name][str(count)] = run
                    log(f"pgbench {name}, {count} client(s): {run['tps']:.0f} tps")
        finally:
            _drop_jobs(conn, job_ids)
            conn.execute(f"DROP TABLE IF EXISTS {MAP_TABLE}")
    return results
