#!/usr/bin/env python3
"""Chaos run: real PostgreSQL, a Redis of its own, two ``envoy_worker`` supervisors, and trouble.

    make chaos                      # 1,000 jobs
    make chaos CHAOS_ARGS=--ci      # ~160 jobs, under 3 minutes on 2 cores
    python chaos/run.py --help

What it does
  * creates its own database (``envoy_chaos_<pid>``, on the server of
    DATABASE_URL, default postgres://postgres@127.0.0.1:5432) and starts its
    own ``redis-server`` on a free port, so it never disturbs anyone else;
  * installs two recorders: a trigger on the job table that logs every change
    of lease owner or status (the lease history), and a ``chaos_exec`` table
    in which every handler call of the chaos flows records its owner and
    start/end (see chaos/flows.py);
  * starts 2 supervisors (``python -m django envoy_worker --concurrency 2``)
    with LEASE_SECONDS=2 and SWEEP_INTERVAL=0.5, and feeds them jobs of
    ``chaos_main`` (10 states; some spawn children, some wait on an outside
    event the harness resolves by polling ``scheduler.list_blocking_jobs()``),
    keeping a bounded number of top-level jobs in flight;
  * meanwhile SIGKILLs a random worker process every few seconds (preferring
    one that holds a lease); and once each, at 20/30/45/70% of the jobs:
    FLUSHALLs Redis, SIGKILLs a whole ``envoy_worker`` (supervisor and workers,
    the one holding RQ's scheduler lock if it can tell) and starts another,
    terminates every PostgreSQL connection of the workers, and restarts its
    Redis server (empty); three jobs are armed (``ENVOY_FAULTS``) so that the
    worker taking their message dies before claiming them; handlers also fail
    at random (--fail-rate) and are retried with backoff;
  * stops the supervisors (warm shutdown), then checks and prints:
      - every job is done, with the children its plan asked for;
      - each job's successful Step history holds each transition exactly once
        (lost = 0, duplicated = 0) and its output (the trail of states its
        committed context went through) lists each state once;
      - leases were exclusive: no owner took a job over before the previous
        owner's lease had expired or been released (lease history);
      - every Step lies inside a lease its worker held, and Steps of different
        workers on one job never overlap;
      - handler calls of different owners on one job never overlapped (the
        Step history alone cannot show this: a worker that lost its lease
        writes no Step);
      - after each kill, every job the killed process held ran its next phase
        within LEASE_SECONDS + SWEEP_INTERVAL + slack (--slack, default 3s:
        the supervisor's tick, the sweep's own run, the queue ahead of the
        re-enqueued job - bounded by --inflight, but served by fewer workers
        while others are being killed - and a busy 2-core machine; plus the
        outage if Redis was down meanwhile);
      - a failed phase ran again within RETRY_BACKOFF_MAX + lease + sweep +
        slack, even when RQ's scheduler died with its supervisor;
      - no process was left behind after the supervisors stopped.
    It prints a one-line summary and exits 1 if any check fails.

Every process it starts runs in its own session; whatever happens (failure,
Ctrl+C, SIGTERM), they are killed by process group and the database is
dropped (``--keep-db`` keeps it, ``--keep-logs`` keeps the worker logs,
which are also kept when the run fails).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from envoy_django.testing.processes import WorkerProcesses, wait_until  # noqa: E402  (after the path)

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"
FINISHED = ("done", "failed", "cancelled")


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ci", action="store_true", help="the CI size: fewer jobs, same disruptions")
    parser.add_argument("--jobs", type=int, help="top-level jobs (default 1000, --ci 160)")
    parser.add_argument("--supervisors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes per supervisor")
    parser.add_argument("--lease", type=float, default=2.0, help="ENVOY LEASE_SECONDS")
    parser.add_argument("--sweep", type=float, default=0.5, help="ENVOY SWEEP_INTERVAL")
    parser.add_argument("--slack", type=float, default=3.0,
                        help="scheduling slack allowed on top of lease + sweep for a recovery (seconds)")
    parser.add_argument("--kill-every", type=float, help="mean seconds between SIGKILLs (default 3, --ci 2)")
    parser.add_argument("--inflight", type=int, default=8, help="top-level jobs unfinished at once")
    parser.add_argument("--fail-rate", type=float, default=0.02, help="chance a handler call raises (retried)")
    parser.add_argument("--work-ms", default="5,30", help="handler duration range in ms, 'lo,hi'")
    parser.add_argument("--redis-down", type=float, default=1.0, help="seconds Redis stays down on restart")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds (default 900, --ci 150)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (160 if args.ci else 1000)
    args.kill_every = args.kill_every or (2.0 if args.ci else 3.0)
    args.timeout = args.timeout or (150.0 if args.ci else 900.0)
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    return args


# --- processes ---------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (ppid, pgrp, state, command) for every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'.
        rest = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(rest[1]), int(rest[2]), rest[0], cmd)
    return table


def alive(pid: int) -> bool:
    info = proc_table().get(pid)
    return info is not None and info[2] != "Z"


class Processes:
    """Every process the harness starts: each in its own session, killed by group at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.log", "ab")
        try:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        self.started.append(process)
        return process

    def group_members(self, process: subprocess.Popen) -> list[tuple[int, str]]:
        return [(pid, cmd) for pid, (_, pgrp, state, cmd) in proc_table().items()
                if pgrp == process.pid and state != "Z"]

    def cleanup(self) -> None:
        for process in self.started:
            self._signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(self.group_members(p) for p in self.started):
            time.sleep(0.1)
        for process in self.started:
            self._signal_group(process, signal.SIGKILL)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    @staticmethod
    def _signal_group(process: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, processes: Processes, port: int) -> None:
        self.processes = processes
        self.port = port
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not on PATH")
        self.process = self.processes.spawn(
            "redis",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            dict(os.environ),
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} (port {self.port})")
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        wait_until(up, 15, f"redis-server on port {self.port}")
        client.close()

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=15)


# --- the database --------------------------------------------------------------


def database_urls(db_name: str) -> tuple[str, str]:
    """(URL of the maintenance database ``postgres``, URL of the chaos database)."""
    base = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL)
    if not base.scheme.startswith("postgres"):
        raise SystemExit(f"the chaos run needs PostgreSQL; DATABASE_URL is {base.scheme}://...")
    return urlunsplit(base._replace(path="/postgres")), urlunsplit(base._replace(path=f"/{db_name}"))


def admin_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


RECORDERS_SQL = """
CREATE TABLE chaos_exec (
    id bigserial PRIMARY KEY, job_key text NOT NULL, state text NOT NULL, step int NOT NULL,
    owner text NOT NULL, pid int NOT NULL, started_at timestamptz NOT NULL,
    finished_at timestamptz, outcome text
);
CREATE TABLE chaos_lease_log (
    id bigserial PRIMARY KEY, job_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
    old_owner text, new_owner text, old_expires timestamptz, new_expires timestamptz,
    old_status text, new_status text
);
CREATE FUNCTION chaos_log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lease_owner IS DISTINCT FROM OLD.lease_owner OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO chaos_lease_log (job_id, old_owner, new_owner, old_expires, new_expires, old_status, new_status)
        VALUES (NEW.id, OLD.lease_owner, NEW.lease_owner, OLD.lease_expires_at, NEW.lease_expires_at,
                OLD.status, NEW.status);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_lease_log AFTER UPDATE ON envoy_django_job
    FOR EACH ROW EXECUTE FUNCTION chaos_log_lease();
"""


# --- the run -------------------------------------------------------------------


@dataclass
class Kill:
    at: dt.datetime
    pid: int
    victims: list[str] = field(default_factory=list)


@dataclass
class Run:
    args: argparse.Namespace
    plans: dict[str, dict] = field(default_factory=dict)  # key -> plan
    kills: list[Kill] = field(default_factory=list)
    events: dict[str, Any] = field(default_factory=dict)  # disruption name -> time / details
    resolved_waits: int = 0
    call_errors: Counter = field(default_factory=Counter)
    supervisor_restarts: int = 0
    faults_fired: int = 0  # workers killed between taking a message and claiming its job
    leftovers: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    started_wall: dt.datetime | None = None


def make_plan(rng: random.Random, index: int) -> dict:
    """About a third of the jobs spawn 1-2 children, about 40% wait on an outside event."""
    return {
        "key": f"j{index:05d}",
        "children": rng.choice([1, 2]) if rng.random() < 0.35 else 0,
        "wait": rng.random() < 0.4,
        "token": rng.randrange(1_000_000),
    }


class Harness:
    def __init__(self, args: argparse.Namespace, processes: Processes, redis_server: RedisServer,
                 worker_env: dict[str, str], faults: Path) -> None:
        self.args = args
        self.faults = faults
        self.processes = processes
        self.redis = redis_server
        self.worker_env = worker_env
        self.workers = WorkerProcesses("chaos.settings", cwd=ROOT, env=worker_env, log_dir=processes.log_dir)
        self.rng = random.Random(args.seed)
        self.run = Run(args)
        self.supervisors: list[subprocess.Popen] = []
        self.generation = 0

    # --- workers -------------------------------------------------------------

    def start_supervisor(self) -> subprocess.Popen:
        self.generation += 1
        process = self.workers.start(self.args.concurrency, verbosity=1, name=f"supervisor-{self.generation}")
        self.processes.started.append(process)  # the harness's cleanup kills its group, whatever happens
        log(f"supervisor {process.pid} started (log {self.processes.log_dir}/supervisor-{self.generation}.log)")
        return process

    def worker_pids(self) -> list[int]:
        table = proc_table()
        parents = {s.pid for s in self.supervisors}
        return [pid for pid, (ppid, _, state, _) in table.items() if ppid in parents and state != "Z"]

    def keep_supervisors(self) -> None:
        for index, process in enumerate(self.supervisors):
            if process.poll() is not None:
                log(f"!! supervisor {process.pid} exited with {process.returncode}; starting another")
                self.run.supervisor_restarts += 1
                self.supervisors[index] = self.start_supervisor()

    # --- disruptions ---------------------------------------------------------

    def kill_a_worker(self) -> None:
        from django.utils import timezone

        from envoy_django.models import Job

        workers = self.worker_pids()
        if not workers:
            return
        holders = set()
        for owner in Job.objects.filter(status="running").values_list("lease_owner", flat=True):
            parts = owner.split(":")
            if len(parts) >= 2 and parts[1].isdigit():
                holders.add(int(parts[1]))
        busy = [pid for pid in workers if pid in holders]
        pid = self.rng.choice(busy if busy and self.rng.random() < 0.8 else workers)
        at = timezone.now()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        try:
            wait_until(lambda: not alive(pid), 5, f"worker {pid} to die", interval=0.01, max_interval=0.01)
        except AssertionError:
            log(f"!! worker {pid} still alive 5s after SIGKILL")
        victims = [str(pk) for pk in Job.objects.filter(status="running", lease_owner__regex=rf"^[^:]*:{pid}:")
                   .values_list("pk", flat=True)]
        self.run.kills.append(Kill(at, pid, victims))

    def kill_supervisor(self) -> None:
        """SIGKILL one whole ``envoy_worker`` (supervisor, workers): a machine going away.

        Its supervisor held RQ's scheduler lock or not; if it did, the lock
        outlives it by a minute, and delayed retries must not wait for that.
        """
        from django.utils import timezone

        from envoy_django.models import Job

        holder = self.scheduler_holder()
        groups = {pid: pgrp for pid, (_, pgrp, _, _) in proc_table().items()}
        holding = [i for i, s in enumerate(self.supervisors) if holder and groups.get(holder) == s.pid]
        index = holding[0] if holding else self.rng.randrange(len(self.supervisors))
        victim = self.supervisors[index]
        workers = [pid for pid, (ppid, _, state, _) in proc_table().items() if ppid == victim.pid and state != "Z"]
        at = timezone.now()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        wait_until(lambda: not self.processes.group_members(victim), 10, f"the group of supervisor {victim.pid} to die")
        for pid in workers:
            victims = [str(pk) for pk in Job.objects.filter(status="running", lease_owner__regex=rf"^[^:]*:{pid}:")
                       .values_list("pk", flat=True)]
            self.run.kills.append(Kill(at, pid, victims))
        self.run.events["kill_supervisor"] = (f"pid {victim.pid} and its {len(workers)} workers"
                                              f"{' (it held the RQ scheduler lock)' if holding else ''}")
        log(f"SIGKILL to supervisor {victim.pid} and its workers {workers}; starting another")
        self.supervisors[index] = self.start_supervisor()

    def scheduler_holder(self) -> int | None:
        """The pid of the process holding RQ's scheduler lock for the Envoy queue, if any."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            name = client.get("rq:scheduler-lock:envoy")
            pid = client.hget(f"rq:scheduler:{name.decode()}", "pid") if name else None
            return int(pid) if pid and int(pid) else None
        finally:
            client.close()

    def flushall(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis.url)
        keys = client.dbsize()
        client.flushall()
        client.close()
        self.run.events["flushall"] = f"{keys} keys"
        log(f"FLUSHALL ({keys} keys dropped)")

    def terminate_connections(self) -> None:
        from django.db import connection
        from django.utils import timezone

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            killed = cursor.fetchone()[0]
        self.run.events["pg_terminate_time"] = timezone.now()
        self.run.events["pg_terminate"] = f"{killed} connections"
        log(f"pg_terminate_backend: {killed} worker connections terminated")

    def restart_redis(self) -> None:
        from django.utils import timezone

        stopped = timezone.now()
        self.redis.stop()
        log(f"redis-server stopped; down for {self.args.redis_down}s")
        time.sleep(self.args.redis_down)
        self.redis.start()
        self.run.events["redis_down"] = (stopped, timezone.now())
        self.run.events["redis_restart"] = f"down {(timezone.now() - stopped).total_seconds():.1f}s"
        log("redis-server started again on the same port (empty)")

    # --- feeding and answering ------------------------------------------------

    def submit(self, plan: dict, *, kill_before_claim: bool = False) -> bool:
        """Schedule the plan's job; with ``kill_before_claim``, the worker that takes its message dies at once."""
        from django.db import transaction

        from envoy_django import scheduler
        from envoy_django.models import Job

        try:
            with transaction.atomic():  # the message goes out on commit: after the fault is armed
                job_id = scheduler.schedule("chaos_main", plan, idempotency_key=plan["key"])
                if kill_before_claim:
                    with self.faults.open("a") as handle:
                        handle.write(f"before_claim {job_id}\n")
                    self.run.events["kill_before_claim"] = self.run.events.get("kill_before_claim", 0) + 1
        except Exception as exc:
            self.run.call_errors[f"schedule: {type(exc).__name__}"] += 1
            return Job.objects.filter(idempotency_key=plan["key"]).exists()
        return True

    def collect_fired_faults(self) -> None:
        """Each fault that fired is a kill: its job must run within the bound, like any other victim."""
        seen = {(kill.pid, tuple(kill.victims)) for kill in self.run.kills}
        for line in self.faults.read_text().splitlines():
            if line.startswith("fired "):
                _, _, job_id, pid, when = line.split()
                at = dt.datetime.fromtimestamp(float(when), tz=dt.UTC)
                if (int(pid), (job_id,)) not in seen:
                    self.run.kills.append(Kill(at, int(pid), [job_id]))
                    self.run.faults_fired += 1

    def resolve_events(self) -> None:
        from envoy_django import scheduler
        from envoy_django.models import Job

        try:
            blocking = scheduler.list_blocking_jobs()
        except Exception as exc:
            self.run.call_errors[f"list_blocking_jobs: {type(exc).__name__}"] += 1
            return
        todo = [(job["job_id"], wait["id"]) for job in blocking for wait in job["waits"]
                if wait["type"] == "event" and wait["status"] == "pending"]
        if not todo:
            return
        inputs = dict(Job.objects.filter(pk__in=[j for j, _ in todo]).values_list("pk", "input"))
        for job_id, wait_id in todo:
            token = (inputs.get(uuid.UUID(job_id)) or {}).get("token")
            try:
                scheduler.resolve_blocking_job(job_id, wait_id, {"token": token})
                self.run.resolved_waits += 1
            except Exception as exc:
                # The wait committed as resolved if only the enqueue failed (Redis down): the sweep recovers it.
                self.run.call_errors[f"resolve_blocking_job: {type(exc).__name__}"] += 1
                from envoy_django.models import Wait

                if Wait.objects.filter(job_id=job_id, wait_id=wait_id, status="resolved").exists():
                    self.run.resolved_waits += 1

    # --- the loop ------------------------------------------------------------

    def drive(self) -> None:
        from django.utils import timezone

        from envoy_django.models import Job

        args = self.args
        self.supervisors = [self.start_supervisor() for _ in range(args.supervisors)]
        wait_until(lambda: len(self.worker_pids()) >= args.supervisors * args.concurrency, 60,
                   "the worker processes to start")
        plans = [make_plan(self.rng, i) for i in range(args.jobs)]
        pending = list(plans)
        # Three jobs whose first worker dies between dequeue and claim, spread over the run.
        doomed = {plans[int(args.jobs * f)]["key"] for f in (0.1, 0.5, 0.85)}
        disruptions = [(0.20, "flushall", self.flushall), (0.30, "kill_supervisor", self.kill_supervisor),
                       (0.45, "pg_terminate", self.terminate_connections),
                       (0.70, "redis_restart", self.restart_redis)]
        next_kill = time.monotonic() + self._kill_gap()
        next_resolve = 0.0
        next_report = time.monotonic() + 10
        deadline = time.monotonic() + args.timeout
        self.run.started = time.monotonic()
        self.run.started_wall = timezone.now()
        log(f"feeding {args.jobs} jobs (seed {args.seed}), {args.inflight} in flight")
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(self._stuck_report())
            self.keep_supervisors()
            finished_top = Job.objects.filter(parent=None, status__in=FINISHED).count()
            unfinished_top = len(self.run.plans) - finished_top
            while pending and unfinished_top < args.inflight:
                if not self.submit(pending[0], kill_before_claim=pending[0]["key"] in doomed):
                    break
                plan = pending.pop(0)
                self.run.plans[plan["key"]] = plan
                unfinished_top += 1
            if now >= next_resolve:
                self.resolve_events()
                next_resolve = now + 0.1
            fraction = finished_top / args.jobs
            while disruptions and fraction >= disruptions[0][0]:
                _, name, action = disruptions.pop(0)
                self.run.events[name + "_at"] = round(now - self.run.started, 1)
                action()
            if now >= next_kill:
                self.kill_a_worker()
                next_kill = time.monotonic() + self._kill_gap()
            self.collect_fired_faults()
            if now >= next_report:
                log(f"{finished_top}/{args.jobs} top-level jobs finished, {len(self.run.kills)} kills")
                next_report = now + 10
            if not pending and not disruptions and not Job.objects.exclude(status__in=FINISHED).exists():
                break
            time.sleep(0.05)
        self.run.events["elapsed"] = time.monotonic() - self.run.started
        log(f"all {Job.objects.count()} jobs finished in {self.run.events['elapsed']:.1f}s; stopping the workers")

    def _kill_gap(self) -> float:
        return self.args.kill_every * self.rng.uniform(0.6, 1.4)

    def _stuck_report(self) -> str:
        from envoy_django.models import Job

        counts = Counter(Job.objects.values_list("status", flat=True))
        lines = [f"gave up after {self.args.timeout}s: job statuses {dict(counts)}"]
        for job in Job.objects.exclude(status__in=FINISHED).order_by("updated_at")[:10]:
            lines.append(f"  {job.pk} {job.flow} {job.status} state={job.state} owner={job.lease_owner!r} "
                         f"expires={job.lease_expires_at} run_after={job.run_after} sent={job.enqueued_at} "
                         f"claims={job.claims} updated={job.updated_at}")
        return "\n".join(lines)

    def stop_supervisors(self) -> None:
        for process in self.supervisors:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.supervisors:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.run.leftovers.append(f"supervisor {process.pid} still running 30s after SIGTERM")
        time.sleep(0.5)  # let orphans show themselves
        for process in self.supervisors:
            for pid, cmd in self.processes.group_members(process):
                self.run.leftovers.append(f"pid {pid} ({cmd[:80]}) outlived supervisor {process.pid}")


# --- the checks ----------------------------------------------------------------


MAIN_STATES = [f"S{i}" for i in range(10)]
CHILD_STATES = ["C0", "C1", "C2"]
RETRY_BACKOFF_MAX = 1.0  # chaos/settings.py


class _Verifier:
    """The checks of one run, each a method; what one check gathers, a later one reads."""

    def __init__(self, run: Run) -> None:
        from envoy_django.models import Job

        self.run = run
        self.args = run.args
        self.failures: list[str] = []
        self.stats: dict[str, Any] = {}
        self.jobs = {str(j.pk): j for j in Job.objects.all()}
        self.key_of = {pk: (j.input or {}).get("key") for pk, j in self.jobs.items()}
        self.job_of_key = {key: pk for pk, key in self.key_of.items()}
        self.stats["jobs"] = sum(1 for j in self.jobs.values() if j.parent_id is None)
        self.stats["children"] = len(self.jobs) - self.stats["jobs"]

    def all(self) -> tuple[list[str], dict[str, Any]]:
        self._check_jobs()
        self._check_history()
        self._check_leases()
        self._check_steps_within_leases()
        self._check_handler_calls()
        self._check_recoveries()
        self._check_retries()
        self._check_bookkeeping()
        return self.failures, self.stats

    def _check_jobs(self) -> None:
        """Every job done, with its children."""
        (run, args, failures, stats, jobs, key_of, job_of_key) = (
            self.run, self.args, self.failures, self.stats, self.jobs, self.key_of, self.job_of_key
        )
        not_done = [j for j in jobs.values() if j.status != "done"]
        if len(run.plans) != args.jobs:
            failures.append(f"only {len(run.plans)} of {args.jobs} jobs were submitted")
        if stats["jobs"] != len(run.plans):
            failures.append(f"{stats['jobs']} top-level jobs in the database, {len(run.plans)} submitted")
        for job in not_done[:10]:
            failures.append(f"job {job.pk} ({key_of[str(job.pk)]}) is {job.status} at {job.state}: "
                            f"{job.error_type} {job.error[:200]}")
        if len(not_done) > 10:
            failures.append(f"... and {len(not_done) - 10} more jobs not done")
        children_of: dict[str, int] = Counter(str(j.parent_id) for j in jobs.values() if j.parent_id)
        expected_children = 0
        for key, plan in run.plans.items():
            pk = job_of_key.get(key)
            expected_children += plan["children"]
            if pk and children_of.get(pk, 0) != plan["children"]:
                failures.append(f"job {pk} ({key}) has {children_of.get(pk, 0)} children, its plan {plan['children']}")
            if pk and jobs[pk].status == "done" and jobs[pk].output != MAIN_STATES:
                failures.append(f"job {pk} ({key}) output trail {jobs[pk].output}, expected each state once")
        for pk, job in jobs.items():
            if job.parent_id and job.status == "done" and job.output != CHILD_STATES:
                failures.append(f"child {pk} output trail {job.output}, expected each state once")
        stats["expected_children"] = expected_children
        waits = sum(1 for plan in run.plans.values() if plan["wait"])
        if run.resolved_waits != waits:
            failures.append(f"{run.resolved_waits} event waits resolved, {waits} planned")
        self.expected_children = expected_children

    def _check_history(self) -> None:
        """Each transition exactly once."""
        from envoy_django.models import Step

        failures, stats, jobs, key_of = self.failures, self.stats, self.jobs, self.key_of
        steps: dict[str, list] = defaultdict(list)
        for step in Step.objects.order_by("pk").values("job_id", "number", "state", "phase", "error", "worker",
                                                       "started_at", "finished_at"):
            steps[str(step["job_id"])].append(step)
        lost = duplicated = 0
        for pk, job in jobs.items():
            names = CHILD_STATES if job.parent_id else MAIN_STATES
            expected = [(i + 1, name, "state") for i, name in enumerate(names)]
            actual = [(s["number"], s["state"], s["phase"]) for s in steps[pk] if not s["error"]]
            job_lost = len(set(expected) - set(actual))
            job_dup = len(actual) - len(set(actual) & set(expected))
            if job_lost or job_dup or actual != expected:
                failures.append(f"job {pk} ({key_of[pk]}) history {actual}, expected {expected}")
            lost += job_lost
            duplicated += job_dup
        stats["lost"] = lost
        stats["duplicated"] = duplicated
        stats["failed_steps"] = sum(1 for ss in steps.values() for s in ss if s["error"])
        self.steps = steps

    def _check_leases(self) -> None:
        """Exclusive leases, from the trigger's lease history."""
        from django.db import connection

        failures, stats = self.failures, self.stats
        with connection.cursor() as cursor:
            cursor.execute("SELECT job_id, at, old_owner, new_owner, old_expires, new_status"
                           " FROM chaos_lease_log ORDER BY id")
            lease_rows = cursor.fetchall()
            cursor.execute("SELECT job_key, state, owner, pid, started_at, finished_at, outcome FROM chaos_exec")
            exec_rows = cursor.fetchall()
        intervals: dict[str, list[tuple[str, dt.datetime, dt.datetime | None]]] = defaultdict(list)
        current: dict[str, tuple[str, dt.datetime]] = {}
        takeovers = 0
        lease_violations = []
        for job_id, at, old_owner, new_owner, old_expires, _status in lease_rows:
            job_id = str(job_id)
            if new_owner and old_owner and new_owner != old_owner:
                takeovers += 1
                if old_expires is None or old_expires > at:
                    lease_violations.append(f"job {job_id}: {new_owner} took the lease at {at} from {old_owner}, "
                                            f"whose lease ran until {old_expires}")
            if old_owner != new_owner:
                if job_id in current:
                    owner, since = current.pop(job_id)
                    intervals[job_id].append((owner, since, at))
                if new_owner:
                    current[job_id] = (new_owner, at)
        for job_id, (owner, since) in current.items():
            intervals[job_id].append((owner, since, None))
        failures.extend(lease_violations[:10])
        stats["lease_violations"] = len(lease_violations)
        stats["takeovers"] = takeovers
        stats["claims"] = sum(len(v) for v in intervals.values())
        self.lease_rows = lease_rows
        self.exec_rows = exec_rows
        self.intervals = intervals

    def _check_steps_within_leases(self) -> None:
        """Steps inside their worker's lease, and never overlapping across workers."""
        failures, stats, steps, intervals = self.failures, self.stats, self.steps, self.intervals
        outside = []
        overlaps = []
        for pk, job_steps in steps.items():
            held = intervals.get(pk, [])
            for s in job_steps:
                ok = any(owner == s["worker"] and since <= s["started_at"] and (until is None or (
                    s["started_at"] <= until and (s["error"] or s["finished_at"] <= until)))
                    for owner, since, until in held)
                if not ok:
                    outside.append(f"job {pk}: step {s['number']} {s['state']} ({'failed' if s['error'] else 'ok'}) by "
                                   f"{s['worker']} [{s['started_at']}, {s['finished_at']}] outside its leases")
            overlaps += _overlaps(pk, [(s["worker"], s["started_at"], s["finished_at"]) for s in job_steps], "steps")
        failures.extend(outside[:10])
        failures.extend(overlaps[:10])
        stats["steps_outside_lease"] = len(outside)
        stats["step_overlaps"] = len(overlaps)

    def _check_handler_calls(self) -> None:
        """Handler calls of different owners never overlap."""
        (run, failures, stats, job_of_key, expected_children, exec_rows) = (
            self.run, self.failures, self.stats, self.job_of_key, self.expected_children, self.exec_rows
        )
        death: dict[int, dt.datetime] = {}
        for kill in run.kills:
            death.setdefault(kill.pid, kill.at)
        terminated_at = run.events.get("pg_terminate_time")
        calls: dict[str, list] = defaultdict(list)
        open_calls = 0
        for key, _state, owner, pid, started, finished, _outcome in exec_rows:
            if finished is None:
                # Its end was not written: its process was killed, or its connection terminated.
                ends = [t for t in (death.get(pid), terminated_at) if t is not None and t >= started]
                if ends:
                    finished = min(ends)
                else:
                    open_calls += 1
                    finished = started
            calls[job_of_key.get(key, key)].append((owner, started, finished))
        exec_overlaps = []
        for pk, job_calls in calls.items():
            exec_overlaps += _overlaps(pk, job_calls, "handler calls")
        failures.extend(exec_overlaps[:10])
        stats["exec_overlaps"] = len(exec_overlaps)
        stats["handler_calls"] = len(exec_rows)
        stats["open_calls"] = open_calls
        expected_calls = len(run.plans) * len(MAIN_STATES) + expected_children * len(CHILD_STATES)
        stats["reexecuted"] = len(exec_rows) - expected_calls

    def _check_recoveries(self) -> None:
        """Recovery after each kill."""
        (run, args, failures, stats, jobs, steps, lease_rows) = (
            self.run, self.args, self.failures, self.stats, self.jobs, self.steps, self.lease_rows
        )
        bound = args.lease + args.sweep + args.slack
        redis_down = run.events.get("redis_down")

        def bound_for(start: dt.datetime, base: float) -> float:
            """``base``, plus the Redis outage (and one more sweep) if it fell inside the window."""
            if redis_down and redis_down[0] <= start + dt.timedelta(seconds=base) and redis_down[1] >= start:
                return base + (redis_down[1] - redis_down[0]).total_seconds() + args.sweep
            return base

        claims_of: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
        for job_id, at, old_owner, new_owner, _, _ in lease_rows:
            if new_owner and new_owner != old_owner:
                claims_of[str(job_id)].append((at, new_owner))
        recoveries = []
        recoveries_detail: list[tuple[float, str, Kill]] = []
        inflight_commits = 0
        for kill in run.kills:
            for pk in kill.victims:
                later = [s["started_at"] for s in steps[pk] if s["started_at"] > kill.at]
                if not later:
                    job = jobs[pk]
                    if job.finished_at and job.finished_at <= kill.at + dt.timedelta(seconds=1):
                        inflight_commits += 1  # its last commit was on the wire when the process died
                        continue
                    failures.append(f"job {pk} held by killed pid {kill.pid} never ran again")
                    continue
                end = min(later)
                # Killed again before it ran a phase: it recovered when that next victim claimed it.
                for again in run.kills:
                    if pk in again.victims and kill.at < again.at < end:
                        claims = [c for c in claims_of[pk] if c[0] > kill.at and f":{again.pid}:" in c[1]]
                        if claims:
                            end = min(end, claims[0][0])
                seconds = (end - kill.at).total_seconds()
                recoveries.append(seconds)
                recoveries_detail.append((seconds, pk, kill))
                limit = bound_for(kill.at, bound)
                if seconds > limit:
                    failures.append(f"job {pk} waited {seconds:.2f}s after pid {kill.pid} was killed "
                                    f"(bound {limit:g}s = lease {args.lease:g} + sweep {args.sweep:g} "
                                    f"+ slack {args.slack:g}"
                                    f"{' + Redis outage + sweep' if limit > bound else ''})")
        recoveries_detail.sort(key=lambda r: -r[0])
        stats["worst_recoveries"] = [_recovery_breakdown(seconds, pk, kill, lease_rows, redis_down)
                                     for seconds, pk, kill in recoveries_detail[:3]]
        stats["recoveries"] = len(recoveries)
        stats["max_recovery"] = max(recoveries, default=0.0)
        stats["mean_recovery"] = sum(recoveries) / len(recoveries) if recoveries else 0.0
        stats["bound"] = bound
        stats["inflight_commits"] = inflight_commits
        self.bound_for = bound_for

    def _check_retries(self) -> None:
        """A failed phase (retried after at most RETRY_BACKOFF_MAX) runs again in time.

        Even with the RQ scheduler killed and Redis flushed or restarted: the
        sweep must not trust a lost schedule.
        """
        (run, args, failures, stats, steps, bound_for) = (
            self.run, self.args, self.failures, self.stats, self.steps, self.bound_for
        )
        retry_bound = RETRY_BACKOFF_MAX + args.lease + args.sweep + args.slack
        victim_kills = defaultdict(list)
        for kill in run.kills:
            for pk in kill.victims:
                victim_kills[pk].append(kill.at)
        retry_gaps = []
        retry_detail: list[tuple[float, str, str, dt.datetime]] = []
        for pk, job_steps in steps.items():
            for index, s in enumerate(job_steps):
                if not s["error"] or index + 1 >= len(job_steps):
                    continue
                nxt = min(later["started_at"] for later in job_steps[index + 1:])
                if any(s["finished_at"] <= at <= nxt for at in victim_kills[pk]):
                    continue  # the retry's worker was killed: measured as a recovery above
                gap = (nxt - s["finished_at"]).total_seconds()
                retry_gaps.append(gap)
                retry_detail.append((gap, pk, s["state"], s["finished_at"]))
                if gap > bound_for(s["finished_at"], retry_bound):
                    failures.append(f"job {pk}: retry of {s['state']} started {gap:.2f}s after the failure "
                                    f"(bound {retry_bound:g}s = backoff max {RETRY_BACKOFF_MAX:g} "
                                    "+ lease + sweep + slack)")
        stats["retries"] = len(retry_gaps)
        stats["max_retry_gap"] = max(retry_gaps, default=0.0)
        marks = ", ".join(f"{k[:-3]} +{v}s" for k, v in run.events.items() if k.endswith("_at"))
        stats["worst_retries"] = [
            f"{gap:.2f}s job {pk} state {state}, failed at +{(at - run.started_wall).total_seconds():.1f}s "
            f"(disruptions: {marks})"
            for gap, pk, state, at in sorted(retry_detail, key=lambda r: -r[0])[:2]
        ] if run.started_wall else []

    def _check_bookkeeping(self) -> None:
        """The harness's own bookkeeping."""
        run, failures = self.run, self.failures
        for name in ("flushall", "kill_supervisor", "pg_terminate", "redis_restart"):
            if name not in run.events:
                failures.append(f"disruption {name} did not happen")
        if run.faults_fired != run.events.get("kill_before_claim", 0) or not run.faults_fired:
            failures.append(f"{run.faults_fired} of {run.events.get('kill_before_claim', 0)} kills between dequeue "
                            "and claim happened")
        if len(run.kills) < 3:
            failures.append(f"only {len(run.kills)} kills: the run was too short to test recovery")
        if run.supervisor_restarts:
            failures.append(f"{run.supervisor_restarts} supervisor(s) died and had to be restarted by the harness")
        failures.extend(run.leftovers)


def verify(run: Run) -> tuple[list[str], dict[str, Any]]:
    """Return (failures, numbers for the summary)."""
    return _Verifier(run).all()


def _recovery_breakdown(seconds: float, pk: str, kill: Kill, lease_rows: list, redis_down: Any) -> str:
    """Where the time went: lease expiry, the sweep's re-enqueue, the next claim (seconds after the kill)."""
    parts = []
    note = ""
    if redis_down and redis_down[0] <= kill.at + dt.timedelta(seconds=seconds) and redis_down[1] >= kill.at:
        note = " [Redis was down during this recovery]"
    for job_id, at, old_owner, new_owner, old_expires, _new_status in lease_rows:
        if str(job_id) != pk or at < kill.at:
            continue
        if old_owner and f":{kill.pid}:" in old_owner:
            parts.append(f"lease expired +{(old_expires - kill.at).total_seconds():.2f}s")
            parts.append(f"{'re-enqueued' if not new_owner else 'taken over'} "
                         f"+{(at - kill.at).total_seconds():.2f}s")
        elif new_owner:
            parts.append(f"claimed +{(at - kill.at).total_seconds():.2f}s")
            break
    return f"{seconds:.2f}s job {pk} (pid {kill.pid}): " + ", ".join(parts) + note


def _overlaps(pk: str, intervals: list[tuple[str, dt.datetime, dt.datetime]], what: str) -> list[str]:
    found = []
    ordered = sorted(intervals, key=lambda i: i[1])
    for index, (owner, start, end) in enumerate(ordered):
        for other, other_start, other_end in ordered[index + 1:]:
            if other_start >= end:
                break
            if other != owner:
                found.append(f"job {pk}: {what} of {owner} [{start}, {end}] and {other} "
                             f"[{other_start}, {other_end}] overlap")
    return found


def log_digest(log_dir: Path) -> list[str]:
    """The distinct errors the worker logs mention, most frequent first."""
    pattern = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception|Lost|Warning)):? (.{0,120})")
    counts: Counter = Counter()
    for path in sorted(log_dir.glob("supervisor-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "Traceback" in line:
                continue
            match = pattern.search(line)
            if match:
                text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{32}|\d+", "#", f"{match.group(1)}: {match.group(2)}")
                counts[text[:140]] += 1
    return [f"{n:6d}  {text}" for text, n in counts.most_common(15)]


# --- main ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    db_name = f"envoy_chaos_{os.getpid()}"
    admin_url, db_url = database_urls(db_name)
    log_dir = Path(tempfile.mkdtemp(prefix="envoy-chaos-"))
    processes = Processes(log_dir)
    ok = False
    created = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # even when started with SIGINT ignored (a background job)
    t0 = time.monotonic()
    try:
        redis_server = RedisServer(processes, free_port())
        redis_server.start()
        admin_execute(admin_url, f'CREATE DATABASE "{db_name}"')
        created = True
        env = {
            "ENVOY_CHAOS_DATABASE_URL": db_url,
            "ENVOY_CHAOS_REDIS_URL": redis_server.url,
            "ENVOY_CHAOS_LEASE_SECONDS": str(args.lease),
            "ENVOY_CHAOS_SWEEP_INTERVAL": str(args.sweep),
            "ENVOY_CHAOS_EXECUTION": "rq",
        }
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "chaos.settings"
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(RECORDERS_SQL)
        faults = log_dir / "faults"
        faults.write_text("")
        worker_env = {**os.environ, **env, "ENVOY_CHAOS_RECORD": "1", "ENVOY_FAULTS": str(faults),
                      "ENVOY_CHAOS_FAIL_RATE": str(args.fail_rate), "ENVOY_CHAOS_WORK_MS": args.work_ms,
                      "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        log(f"database {db_name}, redis {redis_server.url}, logs {log_dir}; setup {time.monotonic() - t0:.1f}s")

        harness = Harness(args, processes, redis_server, worker_env, faults)
        try:
            harness.drive()
        finally:
            harness.stop_supervisors()
        failures, stats = verify(harness.run)
        run = harness.run
        print()
        print(f"kills: {len(run.kills)} (victim jobs {sum(len(k.victims) for k in run.kills)}), "
              f"disruptions: " + ", ".join(f"{k}={v}" for k, v in run.events.items()
                                           if k in ("flushall", "kill_supervisor", "pg_terminate", "redis_restart",
                                                    "kill_before_claim")))
        print(f"lease claims {stats['claims']}, takeovers after expiry {stats['takeovers']}, "
              f"steps outside their worker's lease {stats['steps_outside_lease']}, "
              f"handler calls {stats['handler_calls']} (re-executed {stats['reexecuted']}, "
              f"open {stats['open_calls']}), failed steps {stats['failed_steps']}, "
              f"in-flight commits at kill {stats['inflight_commits']}")
        print(f"recovery: mean {stats['mean_recovery']:.2f}s, max {stats['max_recovery']:.2f}s, "
              f"bound {stats['bound']:g}s (lease {args.lease:g} + sweep {args.sweep:g} + slack {args.slack:g}); "
              f"retries {stats['retries']}, max gap {stats['max_retry_gap']:.2f}s")
        for line in stats["worst_recoveries"]:
            print(f"  slowest recovery: {line}")
        for line in stats["worst_retries"]:
            print(f"  slowest retry: {line}")
        if run.call_errors:
            print("harness calls that raised (Redis down; recovered by the sweep): "
                  + ", ".join(f"{k} x{v}" for k, v in run.call_errors.items()))
        digest = log_digest(log_dir)
        if digest:
            print("worker log errors (count, message):")
            print("\n".join(digest))
        for failure in failures:
            print(f"FAIL: {failure}")
        ok = not failures
        print(
            f"chaos {'OK' if ok else 'FAILED'}: jobs={stats['jobs']} children={stats['children']} "
            f"kills={len(run.kills)} recoveries={stats['recoveries']} max_recovery={stats['max_recovery']:.2f}s "
            f"lost_transitions={stats['lost']} duplicated_transitions={stats['duplicated']} "
            f"lease_violations={stats['lease_violations']} step_overlaps={stats['step_overlaps']} "
            f"exec_overlaps={stats['exec_overlaps']} max_retry_gap={stats['max_retry_gap']:.2f}s "
            f"elapsed={run.events.get('elapsed', 0):.1f}s total={time.monotonic() - t0:.1f}s seed={args.seed}",
            flush=True,
        )
        return 0 if ok else 1
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl+C'}); cleaning up")
        return 130
    except Exception as exc:
        log(f"run failed: {type(exc).__name__}: {exc}")
        digest = log_digest(log_dir)
        if digest:
            print("worker log errors (count, message):\n" + "\n".join(digest))
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        processes.cleanup()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if created and not args.keep_db:
            try:
                admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            except Exception as exc:
                log(f"could not drop database {db_name}: {exc}")
        elif created:
            log(f"kept database {db_name}")
        if ok and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            log(f"worker logs kept in {log_dir}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
