"""``manage.py envoy_sweep [--once]``: the recovery sweep, for sites that prefer cron.

``envoy_worker`` already sweeps every SWEEP_INTERVAL; run this instead (or
as well) when no worker runs, e.g. from cron with ``--once``. In
``immediate`` mode the jobs it finds run in this process before it exits.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from envoy_django.conf import envoy_settings
from envoy_django.management import logconfig


class Command(BaseCommand):
    help = "Run Envoy's recovery sweep every SWEEP_INTERVAL seconds, or once with --once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Sweep once, print the counts and exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        from envoy_django.sweeper import Sweeper, sweep_once

        logconfig.configure(options["verbosity"])
        if options["once"]:
            counts = sweep_once()
            if counts is None:
                raise CommandError("the sweep failed; see the log above")
            if options["verbosity"]:
                self.stdout.write(json.dumps(counts))
            return
        sweeper = Sweeper()
        sweeper.install_signal_handlers()
        self.stdout.write(f"sweeping every {envoy_settings.SWEEP_INTERVAL}s (Ctrl+C to stop)")
        sweeper.run()
