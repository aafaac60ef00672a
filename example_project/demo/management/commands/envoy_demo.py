"""``manage.py envoy_demo``: migrate, run the sample flows, show their outcome."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Set up the demo database, run the sample flows and print their outcome."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-serve", action="store_true", help="Do not start the admin server afterwards.")

    def handle(self, *args: Any, **options: Any) -> None:
        from envoy_django import scheduler

        call_command("migrate", verbosity=0)
        job_id = scheduler.schedule("hello")
        job = scheduler.get_job(job_id)
        self.stdout.write(f"hello flow: job {job_id} {job.status}: {job.output!r}")
        self.stdout.write("The full demo (content review, agent, admin approval) is not yet here.")
