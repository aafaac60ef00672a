"""``manage.py envoy_versions``: per flow, the versions this code registers and the unfinished jobs on each.

A version with unfinished jobs that this code does not register is marked:
those jobs wait for a process that has it (or for ``scheduler.migrate_jobs``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from envoy_django.registry import registered, versions_of
from envoy_django.scheduler.versions import version_counts


class Command(BaseCommand):
    help = "List each flow's registered versions and the unfinished jobs on every version."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = version_counts()
        for flow in sorted(set(registered()) | set(counts)):
            have = versions_of(flow)
            self.stdout.write(f"{flow}: registered {', '.join(f'v{v}' for v in have) or 'nothing'}")
            for version in sorted(set(have) | set(counts.get(flow, {}))):
                jobs = counts.get(flow, {}).get(version, 0)
                mark = "" if version in have else "  <- not registered here: these jobs wait for code that has it"
                self.stdout.write(f"  v{version}: {jobs} unfinished job{'s' if jobs != 1 else ''}{mark}")
