"""``manage.py envoy_demo [--no-serve] [--force] [--addrport HOST:PORT]``: the whole tour in one command.

Migrates the database, creates the demo ``admin`` user, schedules the sample
flows while printing each step as it is committed, prints a table of the
outcomes, and leaves the content review (and a refund) waiting for the admin
user; then serves the admin, so a newcomer approves in the browser and
watches the job finish in this console. Running it again is safe: it only
schedules new jobs.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from envoy_django import scheduler
from envoy_django.conf import envoy_settings
from example_project.demo import console
from example_project.demo.llm import provider
from example_project.demo.review import SAMPLE_ARTICLE

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
DEFAULT_ADDRPORT = "127.0.0.1:8000"
# The samples, in the order they are scheduled: (flow, input, how the input is shown).
SAMPLES: list[tuple[str, Any, str]] = [
    ("hello", None, "None"),
    ("big-or-small", 42, "42"),
    ("big-or-small", 7, "7"),
    ("enter-exit", None, "None"),
    ("content-review", SAMPLE_ARTICLE, "SAMPLE_ARTICLE"),
    ("assistant", "What is 2 + 2?", "'What is 2 + 2?'"),
    ("assistant", "Please refund order 42.", "'Please refund order 42.'"),
]


class Command(BaseCommand):
    help = "Set up the demo database and admin user, run the sample flows, then serve the admin."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-serve", action="store_true",
                            help="Do not start the admin server afterwards (also: ENVOY_DEMO_NO_SERVE=1).")
        parser.add_argument("--force", action="store_true",
                            help="Create the demo admin user (password 'admin') even on a non-SQLite database.")
        parser.add_argument("--addrport", default=DEFAULT_ADDRPORT,
                            help=f"Where to serve the admin (default {DEFAULT_ADDRPORT}).")

    def handle(self, *args: Any, **options: Any) -> None:
        no_serve = options["no_serve"] or os.environ.get("ENVOY_DEMO_NO_SERVE", "").lower() in ("1", "true", "yes")
        base_url = f"http://{options['addrport']}"
        write = self.stdout.write

        self.heading("Envoy demo")
        self.say_where()
        self.check_redis()
        call_command("migrate", verbosity=0)
        self.ensure_admin_user(options["force"])

        printer = console.ProgressPrinter(write)
        printer.connect()
        self.heading("\nRunning the sample flows (one line per committed step):")
        job_ids = self.run_samples()
        self.heading("\nSummary:")
        console.print_summary(write, job_ids)
        self.heading("\nWaiting for a person:")
        console.print_escalations(write, job_ids, base_url)
        write(f"  log in as {ADMIN_USERNAME!r} (password {ADMIN_PASSWORD!r} if this command created the user)")

        if no_serve:
            printer.disconnect()
            write(f"\nNot serving (--no-serve or ENVOY_DEMO_NO_SERVE=1). To approve in the browser: "
                  f"python manage.py runserver {options['addrport']}, then open {base_url}/admin/")
            return
        if envoy_settings.EXECUTION == "rq":
            write("\nREDIS_URL is set: a job you approve resumes in a worker; "
                  "run python manage.py envoy_worker in another terminal.")
        write(self.style.SUCCESS(
            f"\nServing the admin at {base_url}/admin/ (log in as {ADMIN_USERNAME!r}). Ctrl+C to stop.\n"
            "Approve the content review there; its steps appear below as it finishes.\n"))
        call_command("runserver", options["addrport"], use_reloader=False)

    def heading(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(text))

    # --- setting up -----------------------------------------------------------------

    def say_where(self) -> None:
        """Which database, execution mode and model this run uses, so nothing is a surprise."""
        name = settings.DATABASES["default"].get("NAME")
        where = f"SQLite file {name}" if connection.vendor == "sqlite" else f"{connection.vendor} database {name!r}"
        if envoy_settings.EXECUTION == "rq":
            execution = "rq (REDIS_URL is set): this command runs a burst worker; later, run manage.py envoy_worker"
        else:
            execution = "immediate (no REDIS_URL): jobs run in this process, right after they are scheduled"
        self.stdout.write(f"  database:  {where}")
        self.stdout.write(f"  execution: {execution}")
        self.stdout.write(f"  model:     {provider.describe()}")

    def check_redis(self) -> None:
        """Fail with a sentence, not a traceback, before anything is scheduled into an unreachable queue."""
        if envoy_settings.EXECUTION != "rq":
            return
        from redis.exceptions import ConnectionError as RedisConnectionError

        from envoy_django.dispatch.rq_queue import get_queue

        try:
            get_queue().connection.ping()
        except RedisConnectionError as exc:
            raise CommandError(
                f"cannot reach Redis at REDIS_URL ({exc}); unset REDIS_URL to run jobs in-process") from exc

    def ensure_admin_user(self, force: bool) -> None:
        """Create ``admin``/``admin``, but only where a known password cannot hurt: the demo's SQLite file."""
        User = get_user_model()
        if User.objects.filter(username=ADMIN_USERNAME).exists():
            self.stdout.write(f"  admin:     user {ADMIN_USERNAME!r} already exists (password unchanged)")
            return
        if connection.vendor != "sqlite" and not force:
            self.stdout.write(self.style.WARNING(
                f"  admin:     not creating user {ADMIN_USERNAME!r} with a known password on a {connection.vendor} "
                f"database; pass --force, or run: python manage.py createsuperuser --username {ADMIN_USERNAME}"))
            return
        User.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
        self.stdout.write(f"  admin:     created user {ADMIN_USERNAME!r} with password {ADMIN_PASSWORD!r} "
                          "(demo database only)")

    # --- running ---------------------------------------------------------------------

    def run_samples(self) -> list[str]:
        job_ids = []
        for flow, value, shown in SAMPLES:
            self.stdout.write(f"  > scheduler.schedule({flow!r}, {shown})")
            job_ids.append(scheduler.schedule(flow, value))
        if envoy_settings.EXECUTION == "rq":
            # Under Redis the jobs are only queued; run them here until the queue is empty, so the tour goes on.
            from envoy_django.worker import work

            self.stdout.write("  (running a burst worker in this process)")
            work(burst=True, with_scheduler=False)
        return job_ids
