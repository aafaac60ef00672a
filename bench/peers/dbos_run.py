"""DBOS peer: a workflow of 10 no-op steps, durably checkpointed in a PostgreSQL system database.

Run by the peers venv's python (bench/peers/venv.py), never the project's:
``BENCH_PEER_DSN=<libpq dsn> python bench/peers/dbos_run.py --jobs N``.
Prints one JSON line. The database in BENCH_PEER_DSN is the caller's fresh
``envoy_bench_peer_dbos``; DBOS 3 has no application database any more
(``database_url`` was removed), so ``system_database_url`` is the only one.

The workflow is envoy's bench_ten in DBOS terms: one ``@DBOS.workflow()``
calling ten ``@DBOS.step()`` no-ops in sequence. It is called directly,
not through ``DBOS.start_workflow``: a direct call runs in this thread and
still records the workflow's status row when it starts and each step's
output in ``operation_outputs`` (one commit per step) before the next step
runs, the same per-step durability, minus a hop through DBOS's executor
thread pool that would only add latency to a sequential run.

No conductor key and no OTLP endpoint are configured and DBOS__* variables
are removed from the environment, so DBOS talks to nothing but PostgreSQL.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

for _name in [name for name in os.environ if name.startswith("DBOS")]:
    del os.environ[_name]  # DBOS__CLOUD, DBOS__CONDUCTOR_*... would point DBOS at its cloud

import psycopg  # noqa: E402
from dbos import DBOS, DBOSConfig  # noqa: E402
from script_args import jobs_and_dsn  # noqa: E402  (a sibling: the script's own folder is on sys.path)
from sqlalchemy.engine import URL  # noqa: E402

STATES = 10


def database_url(dsn: str) -> str:
    """The libpq DSN as the SQLAlchemy URL DBOS wants (a socket directory goes in the query string)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host") or "")
    url = URL.create(
        "postgresql",
        username=str(params["user"]) if params.get("user") else None,
        password=str(params["password"]) if params.get("password") else None,
        host=None if host.startswith("/") else host or None,
        port=int(params["port"]) if params.get("port") else None,
        database=str(params["dbname"]),
        query={"host": host} if host.startswith("/") else {},
    )
    return url.render_as_string(hide_password=False)


def _step(i: int) -> Callable[[int], int]:
    def step(value: int) -> int:
        return i

    return DBOS.step(name=f"S{i}")(step)


STEPS = [_step(i) for i in range(STATES)]


@DBOS.workflow(name="bench_ten")
def bench_ten(value: int) -> int:
    for step in STEPS:
        value = step(value)
    return value


def main() -> None:
    args, dsn = jobs_and_dsn(__doc__.splitlines()[0])

    config: DBOSConfig = {
        "name": "envoy-bench-peer",
        "system_database_url": database_url(dsn),
        "log_level": "WARNING",
        "enable_otlp": False,
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        for _ in range(args.warmup):
            bench_ten(-1)
        began = time.perf_counter()
        for _ in range(args.jobs):
            if bench_ten(-1) != STATES - 1:
                raise RuntimeError("workflow returned the wrong value")
        seconds = time.perf_counter() - began
    finally:
        DBOS.destroy()

    # What DBOS wrote per workflow: proof every step was checkpointed in PostgreSQL.
    workflows = args.jobs + args.warmup
    with psycopg.connect(dsn) as conn:
        statuses = conn.execute("SELECT count(*) FROM dbos.workflow_status WHERE name = 'bench_ten'").fetchone()
        outputs = conn.execute("SELECT count(*) FROM dbos.operation_outputs").fetchone()
    steps = args.jobs * STATES
    print(json.dumps({
        "version": f"dbos {version('dbos')}",
        "workflows": args.jobs,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 1),
        "rows_per_workflow": {"workflow_status": round(statuses[0] / workflows, 2) if statuses else 0,
                              "operation_outputs": round(outputs[0] / workflows, 2) if outputs else 0},
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
