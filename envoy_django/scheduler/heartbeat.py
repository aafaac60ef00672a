"""Lease renewal for the jobs a process runs, in every execution mode.

A running job's lease (LEASE_SECONDS) is what lets the sweep tell a dead
runner from a slow one; a handler may run longer than the lease, so a
thread renews it every LEASE_SECONDS / 3 while the job is held. Immediate
mode needs it as much as a worker does: a sweeper runs there too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

from envoy_django.conf import envoy_settings

log = logging.getLogger("envoy_django.heartbeat")


class Heartbeat(threading.Thread):
    """One daemon thread per process, started on first use.

    It touches only rows this process still owns (job id and lease owner),
    so a lease taken over by another worker stays theirs. It closes its
    database connection after each round: it is idle most of the time.
    """

    _instance: Heartbeat | None = None
    _pid: int | None = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__(name="envoy-heartbeat", daemon=True)
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._tick = threading.Event()  # never set: a sleep that tests could cut short

    @classmethod
    def for_process(cls) -> Heartbeat:
        with cls._create_lock:
            if cls._instance is None or cls._pid != os.getpid():
                cls._instance = cls()
                cls._pid = os.getpid()
                cls._instance.start()
            return cls._instance

    @contextmanager
    def holding(self, job_id: str, owner: str) -> Iterator[None]:
        with self._lock:
            self._held[job_id] = owner
        try:
            yield
        finally:
            with self._lock:
                if self._held.get(job_id) == owner:
                    del self._held[job_id]

    def run(self) -> None:
        from envoy_django.scheduler.transitions import renew_leases

        while True:
            self._tick.wait(max(envoy_settings.LEASE_SECONDS / 3, 0.05))
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                renew_leases(held)
            except Exception:  # a lost connection must not kill the thread
                log.exception("could not renew the leases of %s", ", ".join(held))
            finally:
                connection.close()
