"""The durable checkpoint, without Django: the PostgreSQL ceiling and the raw RQ jobs.

``commit_checkpoint`` commits what the executor commits per transition
(``envoy_django/scheduler/executor.py``, ``_Run._commit``): the fenced UPDATE
of the job row (new context, state, step, output, lease) and the INSERT of
one Step row, in one transaction, with PostgreSQL's default
``synchronous_commit = on``. Same tables, same indexes, same JSON payloads.

Nothing here imports Django: the ceiling clients and the raw RQ workers run
plain psycopg.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

OWNER = "bench-ceiling"

UPDATE_JOB = (
    "UPDATE envoy_django_job SET context = %s, state = %s, step = %s, output = %s, attempts = 0, "
    "updated_at = %s, lease_expires_at = %s "
    "WHERE id = %s AND lease_owner = %s AND status = 'running'"
)
INSERT_STEP = (
    "INSERT INTO envoy_django_step (job_id, number, state, phase, next_state, attempt, input, output, "
    "error, traceback, notes, worker, started_at, finished_at) "
    "VALUES (%s, %s, %s, %s, %s, 1, %s, %s, '', '', '[]', %s, %s, %s) RETURNING id"
)


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=False)


def commit_checkpoint(conn: psycopg.Connection, job_id: str, number: int, payload: dict[str, Any]) -> None:
    """One transition's checkpoint: UPDATE the job row, INSERT one Step row, COMMIT."""
    now = dt.datetime.now(dt.UTC)
    with conn.cursor() as cur:
        cur.execute(UPDATE_JOB, (
            Jsonb(payload["context"]), payload["job_state"], payload["job_step"], Jsonb(payload["output"]),
            now, now + dt.timedelta(seconds=30), job_id, OWNER,
        ))
        if cur.rowcount != 1:
            raise RuntimeError(f"checkpoint of job {job_id} matched {cur.rowcount} rows")
        cur.execute(INSERT_STEP, (
            job_id, number, payload["step_state"], payload["phase"], payload["next_state"],
            Jsonb(payload["input"]), Jsonb(payload["output"]), OWNER, now, now,
        ))
        cur.fetchone()
    conn.commit()


# --- the ceiling: N client processes looping the checkpoint ------------------


def ceiling_client(dsn: str, job_ids: list[str], payloads: list[dict], ready: Any, start: Any, done: Any) -> None:
    """Commit len(payloads) checkpoints for each job in ``job_ids``; report when it finished."""
    conn = connect(dsn)
    ready.set()
    start.wait()
    for job_id in job_ids:
        for number, payload in enumerate(payloads, start=1):
            commit_checkpoint(conn, job_id, number, payload)
    done.put(time.monotonic())
    conn.close()


# --- raw RQ jobs ---------------------------------------------------------------

_conn: psycopg.Connection | None = None
_payload: dict | None = None


def noop() -> None:
    """A raw RQ job that does nothing."""


def checkpoint(job_id: str) -> None:
    """A raw RQ job that commits one checkpoint ("RQ plus one transaction")."""
    if _conn is None:
        checkpoint_setup()
    commit_checkpoint(_conn, job_id, 1, _payload)


def checkpoint_setup() -> None:
    """Connect once per worker process, before the clock starts (as Django keeps its connection)."""
    global _conn, _payload
    import json

    _conn = connect(os.environ["BENCH_PG_DSN"])
    _payload = json.loads(os.environ["BENCH_CHECKPOINT_PAYLOAD"])


def rq_worker(redis_url: str, queue_name: str, ready: Any, start: Any, done: Any) -> None:
    """A plain RQ SimpleWorker draining ``queue_name`` in burst mode once ``start`` is set.

    Puts on ``done`` the monotonic time its last job ended, so the clock
    stops there and not after the worker's own teardown (RQ joins its
    pubsub thread on exit, about a second).
    """
    from redis import Redis
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    class TimedWorker(SimpleWorker):
        last_end = 0.0

        def execute_job(self, job: Any, queue: Any) -> Any:
            result = super().execute_job(job, queue)
            TimedWorker.last_end = time.monotonic()
            return result

    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    worker = TimedWorker([queue], connection=redis, serializer=JSONSerializer)
    redis.ping()
    if _conn is None and os.environ.get("BENCH_CHECKPOINT_PAYLOAD"):
        checkpoint_setup()
    ready.set()
    start.wait()
    worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
    done.put(TimedWorker.last_end)
