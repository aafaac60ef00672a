"""``manage.py envoy_purge --older-than 30d``: delete old finished jobs with their history.

Which jobs go, and which never do, is in ``envoy_django/scheduler/retention.py``:
never an unfinished job, never one whose parent or any job below it is
unfinished. ``ENVOY["RETENTION"]`` lets the sweep do the same, a batch at a time.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from envoy_django.exceptions import EnvoyError
from envoy_django.management import logconfig
from envoy_django.models import FINISHED_STATUSES


class Command(BaseCommand):
    help = "Delete finished jobs older than --older-than, with their steps, waits and escalations, in batches."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", required=True, metavar="AGE",
                            help="finished longer ago than this: 30d, 12h, 90m, 45s or 2w")
        parser.add_argument("--status", default=",".join(FINISHED_STATUSES),
                            help=f"comma-separated, of {', '.join(FINISHED_STATUSES)} (default: all three)")
        parser.add_argument("--flow", default=None, help="only jobs of this flow (their descendants go with them)")
        parser.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
        parser.add_argument("--batch", type=int, default=1000, help="jobs per transaction (default 1000)")

    def handle(self, *args: Any, **options: Any) -> None:
        from envoy_django.scheduler.retention import purge_finished

        logconfig.configure(options["verbosity"])
        statuses = [s.strip() for s in options["status"].split(",") if s.strip()]
        try:
            purged = purge_finished(options["older_than"], statuses=statuses, flow=options["flow"],
                                    batch=options["batch"], dry_run=options["dry_run"])
        except EnvoyError as exc:
            raise CommandError(str(exc)) from exc
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {purged.jobs} job(s) with their steps, waits and escalations; "
            f"kept {purged.skipped} old finished job(s) with unfinished jobs below them or busy rows"
        )
