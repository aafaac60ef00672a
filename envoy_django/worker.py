"""Worker processes: RQ SimpleWorkers on the Envoy queue, a heartbeat, the sweep.

``envoy_worker --concurrency N`` runs a supervisor that forks N worker
processes, restarts any that die, and runs the recovery sweep every
SWEEP_INTERVAL seconds. Each worker runs jobs in-process (no fork per job:
a job already runs many transitions per RQ message), renews the leases of
the job it holds from a heartbeat thread, and on the first SIGTERM finishes
the transition in flight, hands the job back to the queue and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait as wait_for_exit
from typing import Any

from django.db import close_old_connections, connections
from django.utils import timezone
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from envoy_django.conf import envoy_settings
from envoy_django.models import Job, JobStatus
from envoy_django.scheduler.executor import default_owner, lease_until, run_job
from envoy_django.scheduler.sweep import cleanup_orphaned_jobs

log = logging.getLogger("envoy_django.worker")

_stop = threading.Event()


def perform(job_id: str) -> None:
    """The function every Envoy RQ message calls: run one job."""
    owner = default_owner()
    close_old_connections()
    heartbeat = Heartbeat.for_process()
    heartbeat.hold(job_id, owner)
    try:
        run_job(job_id, owner=owner, should_stop=_stop.is_set)
    finally:
        heartbeat.release(job_id)
        close_old_connections()


class Heartbeat(threading.Thread):
    """Renews the lease of the job this process runs, every LEASE_SECONDS / 3.

    One thread per process, started on first use; it touches only rows this
    process still owns, so a lease taken over by another worker stays theirs.
    """

    _instance: "Heartbeat | None" = None
    _pid: int | None = None

    def __init__(self) -> None:
        super().__init__(name="envoy-heartbeat", daemon=True)
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()

    @classmethod
    def for_process(cls) -> "Heartbeat":
        if cls._instance is None or cls._pid != os.getpid():
            cls._instance = cls()
            cls._pid = os.getpid()
            cls._instance.start()
        return cls._instance

    def hold(self, job_id: str, owner: str) -> None:
        with self._lock:
            self._held[job_id] = owner

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def run(self) -> None:
        while True:
            self._wake.wait(max(envoy_settings.LEASE_SECONDS / 3, 0.05))
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                now = timezone.now()
                for job_id, owner in held.items():
                    Job.objects.filter(pk=job_id, lease_owner=owner, status=JobStatus.RUNNING).update(
                        lease_expires_at=lease_until(now)
                    )
            except Exception:  # a lost connection must not kill the thread
                log.exception("heartbeat: could not renew leases")
                connections["default"].close()


class EnvoyWorker(SimpleWorker):
    """RQ's SimpleWorker, with a warm shutdown that also reaches the running job."""

    def request_stop(self, signum: Any, frame: Any) -> None:
        _stop.set()
        super().request_stop(signum, frame)


def get_worker(queue_name: str | None = None, **kwargs: Any) -> EnvoyWorker:
    from envoy_django.dispatch.rq import get_queue

    queue = get_queue() if queue_name is None else _named_queue(queue_name)
    return EnvoyWorker([queue], connection=queue.connection, serializer=JSONSerializer, **kwargs)


def _named_queue(name: str) -> Any:
    import django_rq

    return django_rq.get_queue(name, serializer=JSONSerializer, default_timeout=-1)


def work(queue_name: str | None = None, *, burst: bool = False, with_scheduler: bool = True) -> None:
    """Run one worker in this process until stopped (or the queue is empty, with ``burst``)."""
    _stop.clear()
    worker = get_worker(queue_name)
    worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging.getLevelName(log.getEffectiveLevel()))


class Supervisor:
    """Runs N worker processes and the periodic sweep; restarts workers that die."""

    def __init__(self, concurrency: int, queue_name: str | None = None, burst: bool = False) -> None:
        self.concurrency = concurrency
        self.queue_name = queue_name
        self.burst = burst
        self.children: list[multiprocessing.Process] = []
        self.stopping = False
        self._context = multiprocessing.get_context("fork")

    def _spawn(self) -> multiprocessing.Process:
        connections.close_all()  # never share a database socket with a child
        process = self._context.Process(target=_child_main, args=(self.queue_name, self.burst), daemon=False)
        process.start()
        log.info("worker process %s started", process.pid)
        return process

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:
            for child in self.children:
                if child.is_alive():
                    os.kill(child.pid, signal.SIGKILL)
            raise SystemExit(1)
        self.stopping = True
        log.info("warm shutdown: waiting for workers to finish their transition (signal again to force)")
        for child in self.children:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.sweep()
        self.children = [self._spawn() for _ in range(self.concurrency)]
        next_sweep = time.monotonic() + envoy_settings.SWEEP_INTERVAL
        while True:
            alive = [child for child in self.children if child.is_alive()]
            if self.stopping or self.burst:
                if not alive:
                    break
            else:
                for child in self.children:
                    if not child.is_alive():
                        log.warning("worker process %s exited (%s); starting another", child.pid, child.exitcode)
                        self.children[self.children.index(child)] = self._spawn()
            if not self.stopping and time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + envoy_settings.SWEEP_INTERVAL
            wait_for_exit([child.sentinel for child in self.children], timeout=min(1.0, envoy_settings.SWEEP_INTERVAL))
        if self.burst:
            self.sweep()

    def sweep(self) -> None:
        try:
            cleanup_orphaned_jobs()
        except Exception:
            log.exception("sweep failed; will try again in %ss", envoy_settings.SWEEP_INTERVAL)
            connections.close_all()
        finally:
            close_old_connections()


def _child_main(queue_name: str | None, burst: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor relays Ctrl+C as SIGTERM
    work(queue_name, burst=burst)
