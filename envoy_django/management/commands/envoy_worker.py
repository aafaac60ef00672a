"""``manage.py envoy_worker [--concurrency N] [--burst] [--queue NAME]``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import ConnectionError as RedisConnectionError

from envoy_django.conf import envoy_settings

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


class Command(BaseCommand):
    help = "Run Envoy worker processes (RQ workers on the Envoy queue) and the recovery sweep."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=1, help="Worker processes to run (default 1).")
        parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
        parser.add_argument("--queue", default=None, help="django-rq queue name (default ENVOY['QUEUE']).")

    def handle(self, *args: Any, **options: Any) -> None:
        from envoy_django.worker import Supervisor

        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        level = VERBOSITY_LEVELS.get(options["verbosity"], logging.INFO)
        logging.basicConfig(level=level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
        logging.getLogger("envoy_django").setLevel(level)
        queue = options["queue"] or envoy_settings.QUEUE
        try:
            from envoy_django.dispatch.rq import get_queue

            get_queue().connection.ping()
        except RedisConnectionError as exc:
            raise CommandError(f"cannot reach Redis for queue {queue!r}: {exc}") from exc
        except KeyError as exc:
            raise CommandError(f"no queue {queue!r} in RQ_QUEUES") from exc
        Supervisor(options["concurrency"], options["queue"], options["burst"]).run()
