"""Worker processes: RQ SimpleWorkers on the Envoy queue, a heartbeat, the sweep.

``envoy_worker --concurrency N`` runs a supervisor that forks N worker
processes, restarts any that die (backing off if they keep dying at once,
e.g. while Redis is down), runs the recovery sweep every SWEEP_INTERVAL
seconds, and runs RQ's scheduler (delayed retries and ``run_at``) itself.
Each worker runs jobs in-process (no fork per job:
a job already runs many transitions per RQ message), renews the leases of
the job it holds from a heartbeat thread, and on the first SIGTERM finishes
the transition in flight, hands the job back to the queue and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import wait as wait_for_exit
from multiprocessing.context import ForkProcess
from typing import Any

from django.db import close_old_connections, connections

from envoy_django.exceptions import MissingExtraError

try:
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer
    from rq.worker import WorkerStatus
except ImportError as exc:
    raise MissingExtraError("rq", "envoy_worker in 'rq' mode") from exc

from envoy_django.conf import envoy_settings
from envoy_django.dispatch.rq_queue import message_problem
from envoy_django.scheduler.executor import run_job_then_woken
from envoy_django.sweeper import sweep_once

log = logging.getLogger("envoy_django.worker")

_stop = threading.Event()
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def perform(job_id: str) -> None:
    """The function every Envoy RQ message calls: run one job (and the parents its end resumes)."""
    close_old_connections()
    try:
        run_job_then_woken(job_id, should_stop=_stop.is_set)
    finally:
        close_old_connections()


class EnvoyWorker(SimpleWorker):
    """RQ's SimpleWorker that runs Envoy's own messages only, with a warm shutdown that reaches the job.

    Anyone who can write to Redis can put a message on the queue; a message
    that is not exactly ``perform("<job uuid>")`` (another function, a
    pickle, keyword arguments, callbacks, dependencies) is logged at ERROR
    and removed, before anything it names is imported or called.
    """

    HEARTBEAT_EVERY = 1.0  # seconds; the worker's key lives worker_ttl + 60 s
    PUBSUB_POLL = 1.0  # seconds; RQ's 60 could hold a warm shutdown up to a minute (see subscribe)
    _beat_at = float("-inf")

    def execute_job(self, job: Any, queue: Any) -> None:
        """Take the message off Redis in one round trip, then run the job.

        RQ's own path spends about twenty Redis round trips on a message
        (started registry, execution records, job status and heartbeats,
        result and counters, the cleanup), which took longer than a 1-state
        job itself. None of it is read for Envoy's messages: PostgreSQL holds
        the job, its lease and its history, and the message only says "run
        job X". So the message is removed before the job runs; a worker that
        dies mid-job leaves the job to the sweep, which re-enqueues it when
        its lease runs out (RQ never ran an abandoned message again either).
        An exception out of ``perform`` (the database gone, say; a handler's
        own is a failed attempt inside the run) goes to RQ's exception
        handlers and the log.
        """
        problem = message_problem(job)
        with self.connection.pipeline() as pipeline:
            pipeline.lrem(queue.intermediate_queue_key, 0, job.id)
            if problem is None:
                self.set_state(WorkerStatus.BUSY, pipeline=pipeline)  # a warm shutdown now waits for the job
                pipeline.delete(job.key)
            else:
                job.delete(pipeline=pipeline, remove_from_queue=True)
            pipeline.execute()
        if problem is not None:
            log.error("refused RQ message %s on queue %s: %s; removed it", job.id, queue.name, problem)
            return
        try:
            perform(job.args[0])
        except Exception:
            self.handle_exception(job, *sys.exc_info())

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ beats four or five times per message; one beat a second keeps the worker's key alive."""
        if timeout is None and pipeline is None and time.monotonic() - self._beat_at < self.HEARTBEAT_EVERY:
            return
        self._beat_at = time.monotonic()
        super().heartbeat(timeout, pipeline)

    def subscribe(self) -> None:
        """RQ's subscription to its command channel, with a listener thread that wakes every second.

        RQ's listener blocks up to 60 s and counts on UNSUBSCRIBE's reply to
        wake it; but if that reply arrives before its stop flag is cleared,
        it goes back to waiting, and redis-py's ``stop()`` (since 8) joins it
        without a bound: a worker told to stop while idle hung up to a minute.
        """
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ declares it None
            sleep_time=self.PUBSUB_POLL, daemon=True, exception_handler=self._pubsub_exception_handler)

    def request_stop(self, signum: Any, frame: Any) -> None:
        _stop.set()
        super().request_stop(signum, frame)


def _queues(queue_names: list[str] | None) -> list[Any]:
    """The queues to serve, in priority order (default: ENVOY["QUEUE"])."""
    from envoy_django.dispatch.rq_queue import get_queue

    return [get_queue(name) for name in queue_names] if queue_names else [get_queue()]


def get_worker(queue_names: list[str] | None = None, **kwargs: Any) -> EnvoyWorker:
    """An EnvoyWorker on the queues, with the exception handlers django-rq's settings name (``RQ``)."""
    from django_rq.workers import get_exception_handlers

    queues = _queues(queue_names)
    kwargs.setdefault("exception_handlers", get_exception_handlers() or None)
    return EnvoyWorker(queues, connection=queues[0].connection, serializer=JSONSerializer, **kwargs)


def work(queue_names: list[str] | None = None, *, burst: bool = False, with_scheduler: bool = True) -> None:
    """Run one worker in this process until stopped (or its queues are empty, with ``burst``)."""
    _stop.clear()
    worker = get_worker(queue_names)
    worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging.getLevelName(log.getEffectiveLevel()))


class Supervisor:
    """Runs N worker processes, the periodic sweep and RQ's scheduler; restarts workers that die.

    RQ's scheduler runs here, not in a worker: RQ forks it from the worker
    that takes its lock, so it outlived a SIGKILLed (or OOM-killed) worker as
    an orphan, kept the lock, and survived the supervisor's own shutdown.
    """

    QUICK_EXIT = 1.0  # a worker that dies sooner than this after its start is restarted with a backoff
    MAX_RESTART_DELAY = 5.0

    def __init__(self, concurrency: int, queue_names: list[str] | None = None, burst: bool = False) -> None:
        self.concurrency = concurrency
        self.queue_names = queue_names
        self.burst = burst
        self.children: list[ForkProcess] = []
        self.stopping = False
        self._context = multiprocessing.get_context("fork")
        self._started: dict[int, float] = {}  # slot -> when its process started
        self._quick_exits: dict[int, int] = {}  # slot -> consecutive quick exits
        self._restart_at: dict[int, float] = {}  # slot -> when to start its next process
        self._scheduler: Any = None
        self._scheduler_failing = False
        self._told_to_stop: set[int] = set()

    def _spawn(self, slot: int) -> ForkProcess:
        connections.close_all()  # never share a database socket with a child
        process = self._context.Process(target=_child_main, args=(self.queue_names, self.burst), daemon=False)
        # The child must never run the supervisor's signal handler it inherits: a SIGTERM
        # arriving before RQ installed its own was swallowed there, and the warm shutdown
        # then waited forever. Held here, it reaches the child once _child_main is ready.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._started[slot] = time.monotonic()
        log.info("worker process %s started", process.pid)
        return process

    def _restart_dead(self) -> None:
        """Start a new process for each dead one; after quick exits, wait 0.1s, 0.2s, ... up to 5s."""
        now = time.monotonic()
        for slot, child in enumerate(self.children):
            if child.is_alive():
                continue
            if slot not in self._restart_at:
                quick = now - self._started.get(slot, now) < self.QUICK_EXIT
                self._quick_exits[slot] = self._quick_exits.get(slot, 0) + 1 if quick else 0
                delay = min(0.1 * 2 ** (self._quick_exits[slot] - 1), self.MAX_RESTART_DELAY) if quick else 0.0
                log.warning("worker process %s exited (%s); starting another%s", child.pid, child.exitcode,
                            f" in {delay:.1f}s" if delay else "")
                self._restart_at[slot] = now + delay
            if now >= self._restart_at[slot]:
                del self._restart_at[slot]
                self.children[slot] = self._spawn(slot)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:
            for child in self.children:
                if child.is_alive() and child.pid:
                    os.kill(child.pid, signal.SIGKILL)
            raise SystemExit(1)
        self.stopping = True
        log.info("warm shutdown: waiting for workers to finish their transition (signal again to force)")
        self._tell_children_to_stop()

    def _tell_children_to_stop(self) -> None:
        """SIGTERM each live worker once, including one started while the signal arrived."""
        for child in self.children:
            if child.is_alive() and child.pid and child.pid not in self._told_to_stop:
                os.kill(child.pid, signal.SIGTERM)
                self._told_to_stop.add(child.pid)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.sweep()
        self.schedule()
        self.children = [self._spawn(slot) for slot in range(self.concurrency)]
        next_sweep = time.monotonic() + envoy_settings.SWEEP_INTERVAL
        next_schedule = time.monotonic() + 1.0
        try:
            while True:
                alive = [child for child in self.children if child.is_alive()]
                if self.stopping:
                    self._tell_children_to_stop()
                if self.stopping or self.burst:
                    if not alive:
                        break
                else:
                    self._restart_dead()
                    alive = [child for child in self.children if child.is_alive()]
                if not self.stopping and time.monotonic() >= next_schedule:
                    self.schedule()
                    next_schedule = time.monotonic() + 1.0  # RQ's own scheduler interval
                if not self.stopping and time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + envoy_settings.SWEEP_INTERVAL
                timeout = min(1.0, envoy_settings.SWEEP_INTERVAL)
                if self._restart_at:
                    timeout = max(0.0, min(timeout, min(self._restart_at.values()) - time.monotonic()))
                wait_for_exit([child.sentinel for child in alive], timeout=timeout)
            if self.burst:
                self.schedule()
                self.sweep()
        finally:
            self._stop_scheduler()

    def schedule(self) -> None:
        """Move due delayed messages (retries, ``run_at``) onto the queue, if this supervisor holds RQ's lock.

        One scheduler per queue holds the lock at a time; the others try again
        on every tick and take over within a minute of its holder dying (the
        sweep enqueues overdue jobs in the meantime).
        """
        try:
            if self._scheduler is None:
                from rq.scheduler import RQScheduler

                queues = _queues(self.queue_names)
                self._scheduler = RQScheduler(queues, connection=queues[0].connection, serializer=JSONSerializer,
                                              logging_level=log.getEffectiveLevel())
            scheduler = self._scheduler
            if not scheduler.acquired_locks:
                scheduler.acquire_locks()
            if scheduler.acquired_locks:
                scheduler.heartbeat()  # refreshes the lock, or drops it if another scheduler took it
                scheduler.register_birth()  # rq:scheduler:<name> says which process (pid) holds it
                scheduler.enqueue_scheduled_jobs()
        except Exception as exc:  # Redis down: try again on the next tick, and say so once
            if not self._scheduler_failing:
                log.warning("RQ scheduler: %s: %s; retrying every second", type(exc).__name__, exc)
            self._scheduler_failing = True
        else:
            if self._scheduler_failing:
                log.info("RQ scheduler: working again")
            self._scheduler_failing = False

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None and self._scheduler.acquired_locks:
            try:
                self._scheduler.release_locks()
            except Exception:
                pass

    def sweep(self) -> None:
        sweep_once()


def _child_main(queue_names: list[str] | None, burst: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor relays Ctrl+C as SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until RQ installs its warm shutdown: nothing to finish yet
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # see Supervisor._spawn
    work(queue_names, burst=burst, with_scheduler=False)  # the supervisor runs RQ's scheduler
