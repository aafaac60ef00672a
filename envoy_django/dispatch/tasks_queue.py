"""``ENVOY["EXECUTION"] = "tasks"``: "run job X" goes through the site's Django Tasks backend.

The message is ``perform.enqueue("<job id>")`` on the backend
``ENVOY["TASKS_BACKEND"]`` (a ``TASKS`` alias): envoy runs on whatever
queue the site already has (django-tasks-db's database backend, RQ through
django-tasks-rq, Django's immediate backend...). Nothing else changes:
the claim, leases, fencing and the sweep, which sends again what a backend
lost or never took, within the recovery bound.

A backend without ``supports_defer`` gets no message for a job that is
not due yet: the sweep sends it once it is (in every mode but ``"rq"``).
This module is imported only in that mode; ``perform`` is a Task object
built at import, as the framework wants module-level tasks, so it reads
the backend alias then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.utils import timezone

from envoy_django.conf import envoy_settings
from envoy_django.dispatch.tasks_api import tasks_module

_tasks = tasks_module()


@_tasks.task(backend=envoy_settings.TASKS_BACKEND)
def perform(job_id: str) -> None:
    """Run the job until it blocks, ends or fails (nothing, if it is not ours to run), then the parents it resumes."""
    from envoy_django.scheduler.executor import run_job_then_woken

    run_job_then_woken(job_id)


class TasksDispatcher:
    def enqueue(self, jobs: Sequence[tuple[str, dt.datetime | None, str | None]]) -> None:
        backend = _tasks.task_backends[envoy_settings.TASKS_BACKEND]
        now = timezone.now()
        for job_id, at, queue in jobs:
            later = at is not None and at > now
            if later and not backend.supports_defer:
                continue  # the sweep sends it when it is due
            options: dict[str, object] = {"backend": envoy_settings.TASKS_BACKEND}
            if later:
                options["run_after"] = at
            if queue:
                options["queue_name"] = queue
            perform.using(**options).enqueue(job_id)

    def run_enqueued(self) -> None:
        """The backend's workers run the jobs (or, with Django's immediate backend, ``enqueue`` did)."""
