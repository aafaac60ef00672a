"""``manage.py envoy_worker [--concurrency N] [--burst] [--queue NAME ...]``.

In ``rq`` mode: N RQ worker processes on the Envoy queue, RQ's scheduler
and the recovery sweep. In ``immediate`` mode (no Redis): the recovery
sweep every SWEEP_INTERVAL, running the jobs it finds in this process.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from envoy_django.conf import envoy_settings
from envoy_django.management import logconfig

log = logging.getLogger("envoy_django.worker")


class Command(BaseCommand):
    help = (
        "Run Envoy workers: RQ worker processes and the recovery sweep (EXECUTION 'rq'), "
        "or the sweep alone, running due and stranded jobs in this process (EXECUTION 'immediate') or sending "
        "them to the Django Tasks backend (EXECUTION 'tasks')."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=1, help="Worker processes to run (default 1; rq mode).")
        parser.add_argument("--burst", action="store_true",
                            help="Exit when the queue is empty (immediate mode: after one sweep).")
        parser.add_argument("--queue", action="append", default=None, dest="queues", metavar="NAME",
                            help="a django-rq queue to serve; repeat it for several, in priority order "
                                 "(default ENVOY['QUEUE']; rq mode; they must share one Redis)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        logconfig.configure(options["verbosity"])
        if envoy_settings.EXECUTION != "rq":
            self._immediate(options)
            return
        try:
            from redis.exceptions import ConnectionError as RedisConnectionError

            from envoy_django.worker import Supervisor  # first: it names the extra if rq is missing
        except ImportError as exc:
            raise CommandError(str(exc)) from exc

        queues = options["queues"] or [envoy_settings.QUEUE]
        # The queues this worker serves, checked here: a child process would die on them with a traceback.
        configured = getattr(settings, "RQ_QUEUES", None) or {}
        for queue in queues:
            if queue not in configured:
                known = ", ".join(map(repr, configured)) or "none"
                raise CommandError(f"no queue {queue!r} in RQ_QUEUES (configured: {known})")
            try:
                import django_rq

                django_rq.get_connection(queue).ping()
            except RedisConnectionError as exc:
                raise CommandError(f"cannot reach Redis for queue {queue!r}: {exc}") from exc
        Supervisor(options["concurrency"], options["queues"], options["burst"]).run()

    def _immediate(self, options: dict[str, Any]) -> None:
        from envoy_django.sweeper import Sweeper, sweep_once

        if options["concurrency"] != 1 or options["queues"]:
            log.warning("ENVOY['EXECUTION'] is %r: --concurrency and --queue do not apply", envoy_settings.EXECUTION)
        if options["burst"]:
            sweep_once()
            return
        where = "run here" if envoy_settings.EXECUTION == "immediate" else "go to the Tasks backend"
        log.info("ENVOY['EXECUTION'] is %r: sweeping every %ss; due and stranded jobs %s",
                 envoy_settings.EXECUTION, envoy_settings.SWEEP_INTERVAL, where)
        sweeper = Sweeper()
        sweeper.install_signal_handlers()
        sweeper.run()
